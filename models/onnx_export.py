"""Convert a Hugging Face Phi-3 folder into an onnxruntime-genai model folder.

The conversion is onnxruntime-genai's own model builder, run in a child process
because it is a command-line tool that keeps global state, prints a lot, and may
exit the interpreter on errors; a subprocess keeps that out of the caller.

    python onnx_export.py HF_DIR OUT_DIR [--precision fp32|int4] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PRECISIONS = ("fp32", "int4")
# What onnxruntime-genai needs to open the folder: graph, external weights,
# runtime config, and the tokenizer it reads itself.
EXPECTED_FILES = ("model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json")


class OnnxExportError(RuntimeError):
    """The builder failed or left an incomplete folder."""


def export_onnx(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
    timeout_s: float = 3600,
) -> Path:
    """Build the ONNX model for CPU into `out_dir` and return that path.

    Raises OnnxExportError with the builder's last output lines when the
    builder fails or an expected file is missing.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    hf = Path(hf_dir)
    if not (hf / "config.json").is_file():
        raise OnnxExportError(f"{hf} is not a Hugging Face model folder (no config.json)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="ortgenai-cache-") as tmp_cache:
        cache = Path(cache_dir) if cache_dir else Path(tmp_cache)
        cmd = [
            sys.executable, "-m", "onnxruntime_genai.models.builder",
            "-i", str(hf), "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(cache),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise OnnxExportError(f"ONNX builder did not finish within {timeout_s:.0f} s") from exc

    missing = [name for name in EXPECTED_FILES if not (out / name).is_file()]
    if proc.returncode != 0 or missing:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        reason = f"exit code {proc.returncode}" if proc.returncode != 0 else f"missing {', '.join(missing)}"
        raise OnnxExportError(f"ONNX builder failed for {hf} ({precision}): {reason}\n{tail}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hf_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    try:
        path = export_onnx(args.hf_dir, args.out_dir, args.precision, args.cache_dir)
    except (OnnxExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ONNX model ({args.precision}) written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
