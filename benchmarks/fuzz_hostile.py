"""Hostile-input fuzz of the decoders in their default mode (dicube issue 11).

    nice python benchmarks/fuzz_hostile.py [--scale 1.0] [--seed 11] [series folder]

Mutated HTJ2K codestreams (header fields, marker segments, tile-part headers, packet
headers, code-block bytes, truncations, splices; embedded checksum recomputed) go through
imdecode_jph and decode_batch; .dcbs files holding such a frame, or with header fields
and frame index changed, all CRCs recomputed, through dicube.load and the streaming
reader (uncompressed output); .dcbs files with bytes flipped and no CRC recomputed
(a damaged disk) through dicube.load, comparing the pixels. Every case runs in a worker
process, so a crash is counted instead of ending the run. Prints per target: crashes,
hangs, untyped errors (not a DicomCubeError), typed errors, decoded, wrong pixels.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import REPO, print_table, testdata_root

sys.path.insert(0, str(REPO / "tests"))
from hostile import Corpus, run_cases  # noqa: E402

import dicube  # noqa: E402

#: Cases per target at --scale 1 (21,000 in all).
COUNTS = {"imdecode": 8000, "batch": 2000, "load": 4000, "stream": 2000, "container": 2000, "damaged": 3000}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=testdata_root() / "dicom" / "sample_10")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every target's case count")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--targets", default=",".join(COUNTS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.dcbs"
        dicube.save(dicube.load_from_dicom_folder(args.folder), path)
        corpus = Corpus(path, seed=args.seed, workdir=Path(tmp))
        rows, total = [], Counter()
        for target in args.targets.split(","):
            n = max(1, int(COUNTS[target] * args.scale))
            shown = []

            def log(i, outcome, target=target, shown=shown):
                if len(shown) < 5:
                    shown.append(i)
                    print(f"  {target} case {i}: {outcome}", flush=True)

            t = time.perf_counter()
            counts = run_cases(lambda i, target=target: corpus.case(target, i), range(n), log=log)
            total.update(counts)
            rows.append([target, n, counts["crash"], counts["hang"], counts["untyped"], counts["typed"],
                         counts["decoded"], counts["wrong"], round(time.perf_counter() - t)])
            print(f"{target}: {dict(counts)}", flush=True)
        rows.append(["all", sum(r[1] for r in rows), total["crash"], total["hang"], total["untyped"],
                     total["typed"], total["decoded"], total["wrong"], sum(r[8] for r in rows)])
        print_table(["target", "cases", "crashes", "hangs", "untyped", "typed", "decoded", "wrong pixels", "s"],
                    rows)
    return 1 if total["crash"] or total["hang"] or total["untyped"] or total["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
