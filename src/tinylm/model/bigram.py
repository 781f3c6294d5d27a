"""The bigram model: the next character depends only on the current one.

Its whole knowledge is a (V, V) table whose row ``i`` holds the logits of the character that
follows character ``i``. Training fills the table with (log) bigram counts, more or less.

    model = BigramModel(vocab_size=65, block_size=16)
    logits, loss = model(x, y)     # x, y: (B, T) -> logits (B, T, V), scalar loss
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BigramModel(nn.Module):
    def __init__(self, vocab_size: int, block_size: int = 16):
        super().__init__()
        self.vocab_size = vocab_size
        self.block_size = block_size  # only used to crop the context when generating
        # nn.Embedding's default N(0, 1) init, as in the lecture: step-0 perplexity is ~110, not 65.
        self.token_embedding_table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.token_embedding_table(idx)  # (B, T, V): one table row per input character
        loss = None
        if targets is not None:
            B, T, V = logits.shape
            loss = F.cross_entropy(logits.view(B * T, V), targets.reshape(B * T))
        return logits, loss
