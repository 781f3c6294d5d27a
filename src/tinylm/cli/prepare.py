"""``tinylm prepare``: tokenize a corpus once into token shards that ``tinylm train --data DIR`` memory-maps.

    tinylm prepare books/ notes/*.md --tokenizer bpe --vocab-size 4096 --out data/books
    tinylm prepare tinyshakespeare --tokenizer bpe --vocab-size 1024 --out data/shakespeare-bpe1024
    tinylm prepare stories.jsonl.gz --text-field text --tokenizer byte --out data/stories
    tinylm train --data data/books --preset attention-1 --out runs/books
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def register(subparsers) -> None:
    prep = subparsers.add_parser("prepare", help="tokenize a corpus into train.bin/val.bin for training",
                                 description="Tokenize text files, directories, globs, .jsonl(.gz) and .parquet "
                                             "into a dataset directory.")
    prep.add_argument("sources", nargs="+", metavar="SOURCE",
                      help="files, directories, globs; `tinylm prepare tinyshakespeare` names the cached corpus")
    prep.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write, e.g. data/NAME")
    prep.add_argument("--tokenizer", choices=["char", "byte", "bpe"], default="char")
    prep.add_argument("--vocab-size", type=int, default=4096, metavar="N", help="BPE vocabulary (>= 257)")
    prep.add_argument("--text-field", default="text", metavar="NAME", help="jsonl field / parquet column")
    prep.add_argument("--val-fraction", type=float, default=0.1, metavar="F", help="last fraction of tokens for val")
    prep.add_argument("--val-docs", type=int, default=0, metavar="N", help="hold out the last N documents instead")
    prep.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                      help="replace: go on past bytes that are not UTF-8")
    prep.add_argument("--keep-crlf", action="store_true", help="keep Windows line endings (default: read CR LF as LF)")
    prep.add_argument("--bpe-sample-mb", type=float, default=200.0, metavar="MB", help="text to train BPE on")
    prep.add_argument("--force", action="store_true", help="replace a dataset already in --out")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(handler=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from tinylm import __version__
    from tinylm.data import tinyshakespeare_path
    from tinylm.data.prepare import PrepareOptions, prepare
    from tinylm.errors import DataError

    if args.tokenizer == "bpe" and args.vocab_size < 257:
        raise DataError(f"--vocab-size {args.vocab_size} is too small for byte-level BPE; use at least 257")
    if not 0 < args.val_fraction < 1 or args.val_docs < 0:
        raise DataError("--val-fraction must be in (0, 1) and --val-docs >= 0")
    if not 0 < args.bpe_sample_mb < math.inf:  # also refuses nan, which float() accepts
        raise DataError(f"--bpe-sample-mb {args.bpe_sample_mb} must be a finite number of megabytes > 0, e.g. 200")
    sources = [str(tinyshakespeare_path()) if s == "tinyshakespeare" and not Path(s).exists() else s
               for s in args.sources]
    opts = PrepareOptions(tokenizer=args.tokenizer, vocab_size=args.vocab_size, text_field=args.text_field,
                          val_fraction=args.val_fraction, val_docs=args.val_docs, encoding_errors=args.encoding_errors,
                          bpe_sample_mb=args.bpe_sample_mb, force=args.force, progress=not args.quiet,
                          version=__version__, keep_crlf=args.keep_crlf)
    try:
        meta = prepare(sources, args.out, opts)
    except KeyboardInterrupt:
        print(f"tinylm: interrupted; nothing was written to {args.out}", file=sys.stderr)
        return 130
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    skipped = f", {meta['skipped_binary_files']} binary file(s) skipped" if meta["skipped_binary_files"] else ""
    print(f"prepared {args.out}: {meta['tokenizer']} tokenizer, vocab {meta['vocab_size']}, "
          f"{meta['documents']:,} document(s) from {len(meta['sources'])} file(s){skipped}; "
          f"train {train['tokens']:,} tokens ({train['bytes']:,} bytes), val {val['tokens']:,} tokens "
          f"({val['bytes']:,} bytes)")
    return 0
