"""``tinylm sample``: print samples, stream them character by character, or chat in a loop.

    tinylm sample --run runs/a1 --prompt "ROMEO:" --stream --stop $'\\n\\n'
    tinylm sample --run runs/a1 --prompt-file scene.txt --num-samples 4 --seed 7
    tinylm sample --run runs/a1 -i          # type a prompt, watch it continue; /temp 0.8, /quit
    tinylm sample --run runs/a1 --compile   # compile the one-token step first: faster long samples
    tinylm sample --ensemble runs/a runs/b  # sample the mean of two runs' probabilities

``--num-samples N`` (at most 10,000) draws all N samples as one batch. ``--stop STRING`` ends a sample right after
the first STRING it generates (STRING is printed). Interactive commands are listed by ``/help``.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from tinylm.cli.common import add_model_arguments, load_model
from tinylm.errors import TinyLMError
from tinylm.jsonfile import read_regular_file
from tinylm.sampling import (
    SamplingOptions,
    check_num_samples,
    check_seed,
    prompt_ids,
    sample_texts,
    stream_text,
)

# The CLI may ask for more than a serve request (2000 tokens) but never for memory no machine has:
# a batch keeps every sample's tokens in one (N, prompt + new) tensor, ~8 bytes each, plus its caches.
MAX_NEW_TOKENS = 1_000_000
MAX_PROMPT_BYTES = 8 * 2**20  # a prompt file is read whole; only its last block_size tokens condition the model
MAX_SAMPLES = 10_000
MAX_BATCH_TOKENS = 50_000_000  # num_samples * (prompt + max_new_tokens): 400 MB of token ids

DESCRIPTION = ("Generate text. Past block_size a rope model's (or a rope --ensemble's) key/value cache rolls its "
               "window, so its text may differ slightly from the uncached loop's (tinylm.model.kv_cache).")
HELP = ("type a prompt and press Enter to continue it (an empty line starts from nothing); commands: "
        "/temp T, /top-k K, /top-p P (0 turns top-k/top-p off), /len N, /help, /quit (or Ctrl-D)")


def register(subparsers) -> None:
    sample = subparsers.add_parser("sample", help="generate text from a trained run", description=DESCRIPTION)
    add_model_arguments(sample, "sample from")
    sample.add_argument("--prompt", default="", help="text to continue (default: empty context)")
    sample.add_argument("--max-new-tokens", type=int, default=500, metavar="N",
                        help=f"tokens to generate per sample (default 500, at most {MAX_NEW_TOKENS:,})")
    sample.add_argument("--temperature", type=float, default=1.0, metavar="T", help="0 means greedy")
    sample.add_argument("--top-k", type=int, metavar="K")
    sample.add_argument("--top-p", type=float, metavar="P")
    sample.add_argument("--num-samples", type=int, default=1, metavar="N",
                        help=f"samples drawn as one batch (default 1, at most {MAX_SAMPLES:,})")
    sample.add_argument("--seed", type=int, default=1337)
    sample.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    sample.add_argument("--prompt-file", metavar="FILE", help="read the prompt from a UTF-8 file")
    sample.add_argument("--stream", action="store_true", help="print characters as they are produced")
    sample.add_argument("--stop", metavar="STRING", help="end a sample after it generates STRING")
    sample.add_argument("-i", "--interactive", action="store_true", help="prompt, continue, repeat")
    sample.add_argument("--compile", action="store_true",
                        help="run each new token through one torch.compile graph: seconds to compile, then "
                             "1.4-2.8x faster at batch 1 on a CPU (logits differ from the eager ones by ~1e-6)")
    sample.set_defaults(handler=cmd_sample)


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file is None:
        return args.prompt
    if args.prompt:
        raise TinyLMError("give either --prompt or --prompt-file, not both")
    not_text = TinyLMError(f"prompt file {args.prompt_file} is not a regular file of at most "
                           f"{MAX_PROMPT_BYTES // 2**20} MB; give a UTF-8 text file")
    try:
        raw = read_regular_file(args.prompt_file, MAX_PROMPT_BYTES + 1)  # /dev/zero or a FIFO: not read at all
        if raw is None or len(raw) > MAX_PROMPT_BYTES:
            raise not_text
        return raw.decode("utf-8")
    except IsADirectoryError:
        raise not_text from None
    except FileNotFoundError:
        raise TinyLMError(f"prompt file not found: {args.prompt_file}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise TinyLMError(f"cannot read prompt file {args.prompt_file} as UTF-8 text ({type(exc).__name__})") from None


def cmd_sample(args: argparse.Namespace) -> int:
    from tinylm.device import resolve_device

    sampling = SamplingOptions(args.max_new_tokens, args.temperature, args.top_k, args.top_p).validate(MAX_NEW_TOKENS)
    if check_num_samples(args.num_samples) > MAX_SAMPLES:
        raise TinyLMError(f"--num-samples must be <= {MAX_SAMPLES:,}, got {args.num_samples:,}; run the command again "
                          "for more")
    check_seed(args.seed)
    if args.stop == "":
        raise TinyLMError("--stop needs a non-empty STRING")
    if args.stream and args.num_samples > 1:
        raise TinyLMError("--stream shows one sample as it is produced; drop --num-samples or --stream")
    if args.ensemble and args.compile:
        raise TinyLMError("--compile compiles one model's step; sample an --ensemble without --compile")
    prompt = read_prompt(args)
    model, tokenizer, _, _ = load_model(args, resolve_device(args.device))
    check_batch(args.num_samples, len(prompt_ids(tokenizer, prompt)), sampling.max_new_tokens)  # and unseen chars
    torch.manual_seed(args.seed)
    if args.interactive:
        return interactive_loop(model, tokenizer, sampling, args.stop, args.compile)
    if args.stream:
        print_stream(model, tokenizer, prompt, sampling, args.stop, args.compile)
        return 0
    with out_of_memory_is_user_error(args.num_samples):
        texts = sample_texts(model, tokenizer, prompt, sampling, args.num_samples, args.stop, compiled=args.compile)
    for i, text in enumerate(texts):
        print(("---\n" if i else "") + prompt + text)
    return 0


def check_batch(num_samples: int, prompt_tokens: int, max_new_tokens: int) -> None:
    total = num_samples * (prompt_tokens + max_new_tokens)
    if total > MAX_BATCH_TOKENS:
        raise TinyLMError(f"{num_samples:,} samples of {prompt_tokens:,} prompt + {max_new_tokens:,} new tokens are "
                          f"{total:,} tokens in one batch, over {MAX_BATCH_TOKENS:,}; ask for fewer samples or tokens")


@contextlib.contextmanager
def out_of_memory_is_user_error(num_samples: int):
    """Within the limits a batch's key/value caches (per sample: layers x block_size x n_embed) can still
    outgrow a small machine; torch says so with a RuntimeError naming the allocator."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and "allocate" not in str(exc):
            raise
        raise TinyLMError(f"not enough memory for {num_samples:,} samples at once; ask for fewer --num-samples "
                          "(or run the command several times)") from None


def print_stream(model, tokenizer, prompt: str, sampling: SamplingOptions, stop: str | None,
                 compiled: bool = False) -> None:
    print(prompt, end="", flush=True)
    for ch in stream_text(model, tokenizer, prompt, sampling, stop, compiled=compiled):
        print(ch, end="", flush=True)
    print()


def apply_command(line: str, sampling: SamplingOptions) -> str:
    """Change ``sampling`` as a /command asks; return the message to show."""
    name, _, value = line.partition(" ")
    fields = {"/temp": ("temperature", float), "/top-k": ("top_k", int), "/top-p": ("top_p", float),
              "/len": ("max_new_tokens", int)}
    if name == "/help":
        return HELP
    if name not in fields:
        return f"unknown command {name!r}; {HELP}"
    field, kind = fields[name]
    try:
        number = kind(value.strip())
    except ValueError:
        return f"{name} needs a number, e.g. {name} {'0.8' if kind is float else '10'}"
    old = getattr(sampling, field)
    setattr(sampling, field, None if field in ("top_k", "top_p") and number == 0 else number)
    try:
        sampling.validate(MAX_NEW_TOKENS)
    except TinyLMError as exc:
        setattr(sampling, field, old)
        return f"not changed: {exc}"
    return f"{field} = {getattr(sampling, field)}"


def interactive_loop(model, tokenizer, sampling: SamplingOptions, stop: str | None, compiled: bool = False) -> int:
    """Read prompts from stdin until /quit or end of input; stream each continuation."""
    print(f"tinylm interactive: {HELP}", flush=True)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        if line.strip() == "/quit":
            return 0
        if line.startswith("/"):
            print(apply_command(line.strip(), sampling), flush=True)
            continue
        unknown = tokenizer.unknown_characters(line)
        if unknown:
            print(f"this model never saw {' '.join(map(repr, unknown))}; try another prompt", flush=True)
            continue
        try:
            print_stream(model, tokenizer, line, sampling, stop, compiled)
        except KeyboardInterrupt:  # Ctrl-C stops this continuation, not the loop
            print("\n(stopped)", flush=True)
