"""``tinylm sample``: print samples, stream them character by character, or chat in a loop.

    tinylm sample --run runs/a1 --prompt "ROMEO:" --stream --stop $'\\n\\n'
    tinylm sample --run runs/a1 --prompt-file scene.txt --num-samples 4 --seed 7
    tinylm sample --run runs/a1 -i          # type a prompt, watch it continue; /temp 0.8, /quit

``--num-samples N`` draws all N samples as one batch. ``--stop STRING`` ends a sample right after
the first STRING it generates (STRING is printed). Interactive commands are listed by ``/help``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tinylm.errors import TinyLMError
from tinylm.textgen import Sampling, sample_texts, stream_chars

HELP = ("type a prompt and press Enter to continue it (an empty line starts from nothing); commands: "
        "/temp T, /top-k K, /top-p P (0 turns top-k/top-p off), /len N, /help, /quit (or Ctrl-D)")


def extend_sample_parser(sample: argparse.ArgumentParser) -> None:
    """Add the streaming and interactive options to ``tinylm sample`` and take over its handler."""
    sample.add_argument("--prompt-file", metavar="FILE", help="read the prompt from a UTF-8 file")
    sample.add_argument("--stream", action="store_true", help="print characters as they are produced")
    sample.add_argument("--stop", metavar="STRING", help="end a sample after it generates STRING")
    sample.add_argument("-i", "--interactive", action="store_true", help="prompt, continue, repeat")
    sample.set_defaults(handler=cmd_sample)


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file is None:
        return args.prompt
    if args.prompt:
        raise TinyLMError("give either --prompt or --prompt-file, not both")
    try:
        return Path(args.prompt_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TinyLMError(f"prompt file not found: {args.prompt_file}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise TinyLMError(f"cannot read prompt file {args.prompt_file} as UTF-8 text ({type(exc).__name__})") from None


def cmd_sample(args: argparse.Namespace) -> int:
    from tinylm.checkpoint import load_run
    from tinylm.cli import _check_sample_args
    from tinylm.device import resolve_device

    _check_sample_args(args)
    if args.stop == "":
        raise TinyLMError("--stop needs a non-empty STRING")
    if args.stream and args.num_samples > 1:
        raise TinyLMError("--stream shows one sample as it is produced; drop --num-samples or --stream")
    prompt = read_prompt(args)
    model, tokenizer, _, _ = load_run(args.run, resolve_device(args.device))
    tokenizer.encode(prompt)  # unseen characters fail here, before anything is printed
    sampling = Sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    torch.manual_seed(args.seed)
    if args.interactive:
        return interactive_loop(model, tokenizer, sampling, args.stop)
    if args.stream:
        print_stream(model, tokenizer, prompt, sampling, args.stop)
        return 0
    for i, text in enumerate(sample_texts(model, tokenizer, prompt, sampling, args.num_samples, args.stop)):
        print(("---\n" if i else "") + prompt + text)
    return 0


def print_stream(model, tokenizer, prompt: str, sampling: Sampling, stop: str | None) -> None:
    print(prompt, end="", flush=True)
    for ch in stream_chars(model, tokenizer, prompt, sampling, stop):
        print(ch, end="", flush=True)
    print()


def apply_command(line: str, sampling: Sampling) -> str:
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
        sampling.check()
    except TinyLMError as exc:
        setattr(sampling, field, old)
        return f"not changed: {exc}"
    return f"{field} = {getattr(sampling, field)}"


def interactive_loop(model, tokenizer, sampling: Sampling, stop: str | None) -> int:
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
            print_stream(model, tokenizer, line, sampling, stop)
        except KeyboardInterrupt:  # Ctrl-C stops this continuation, not the loop
            print("\n(stopped)", flush=True)
