"""The teaching notebook's exact calls, as written there (with few iterations)."""

import math

import torch

from tinylm import BatchLoader, BigramLanguageModel, Evaluator, SimpleBigramLanguageModel, Trainer


def test_the_notebooks_calls_run_as_written(shakespeare, capsys):
    text = shakespeare
    chars = sorted(set(text))
    vocab_size = len(chars)
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    encode = lambda s: [stoi[c] for c in s]  # noqa: E731
    decode = lambda l: "".join([itos[i] for i in l])  # noqa: E731, E741 (the notebook's own line)
    data = torch.tensor(encode(text), dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]
    block_size, max_iters, eval_interval = 16, 21, 10

    train_loader = BatchLoader(train_data, block_size=16, batch_size=32)
    val_loader = BatchLoader(val_data, block_size=16, batch_size=32)
    model = SimpleBigramLanguageModel(vocab_size, block_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    evaluator = Evaluator(model, train_loader, val_loader, vocab_size)
    trainer = Trainer(model, optimizer, train_loader, evaluator, max_iters, eval_interval)
    final_losses = trainer.train()
    out = capsys.readouterr().out
    assert "step 0: perplexity: " in out and "step 20: perplexity: " in out
    assert math.isclose(final_losses["train_perplexity"], math.exp(final_losses["train_loss"]))
    text_out = decode(model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=490)[0].tolist())
    assert len(text_out) == 491

    n_embed, n_layer, n_heads, dropout = 64, 1, 4, 0.1
    model = BigramLanguageModel(vocab_size, n_embed, block_size, n_layer, n_heads, dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    evaluator = Evaluator(model, train_loader, val_loader, vocab_size)
    trainer = Trainer(model, optimizer, train_loader, evaluator, max_iters, eval_interval)
    final_losses = trainer.train()
    assert final_losses["val_loss"] < math.log(vocab_size)
    assert model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=300).shape == (1, 301)
