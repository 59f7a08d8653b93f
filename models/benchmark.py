"""Generation speed of the two wrappers on CPU: a table, not a test.

Wrapper A is the transformers text-generation pipeline; wrapper B is
onnxruntime-genai through Phi3OnnxModel, once with fp32 and once with int4
weights. By default everything runs on the tiny random Phi-3 built on the spot,
where the numbers measure per-token overhead rather than arithmetic; pass
--hf-dir and --onnx-dir to time real folders instead.

    python benchmark.py [--max-new-tokens 128] [--repeats 2]
    python benchmark.py --hf-dir HF --onnx-dir fp32=DIR --onnx-dir int4=DIR
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

PROMPTS = [
    "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n",
    "<|user|>\nWrite a short poem about the sea.<|end|>\n<|assistant|>\n",
    "<|user|>\nExplain what a model registry is.<|end|>\n<|assistant|>\n",
    "The quick brown fox",
]


def _time_runs(generate, prompts: list[str], repeats: int) -> tuple[int, float]:
    """Total new tokens and seconds over all prompts and repeats, after one warm-up."""
    generate(prompts[0])
    tokens, seconds = 0, 0.0
    for _ in range(repeats):
        for prompt in prompts:
            start = time.perf_counter()
            tokens += generate(prompt)
            seconds += time.perf_counter() - start
    return tokens, seconds


def bench_pipeline(hf_dir: Path, prompts: list[str], max_new_tokens: int, repeats: int) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype="auto").eval()
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)

    def generate(prompt: str) -> int:
        prompt_len = len(tokenizer(prompt)["input_ids"])
        out = pipe(prompt, max_new_tokens=max_new_tokens, do_sample=False, return_tensors=True)
        return len(out[0]["generated_token_ids"]) - prompt_len

    return _time_runs(generate, prompts, repeats)


def bench_onnx(onnx_dir: Path, prompts: list[str], max_new_tokens: int, repeats: int) -> tuple[int, float]:
    from phi3_onnx_model import Phi3OnnxModel

    model = Phi3OnnxModel.from_folder(onnx_dir)

    def generate(prompt: str) -> int:
        return len(model.generate_ids(prompt, max_new_tokens=max_new_tokens, do_sample=False))

    return _time_runs(generate, prompts, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hf-dir", type=Path, help="Hugging Face folder (default: build the tiny Phi-3)")
    parser.add_argument(
        "--onnx-dir", action="append", default=[], metavar="LABEL=DIR",
        help="onnxruntime-genai folder to time, repeatable (default: export the tiny model as fp32 and int4)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="phi3-bench-") as tmp:
        work = Path(tmp)
        hf_dir = args.hf_dir
        onnx_dirs = dict(item.split("=", 1) for item in args.onnx_dir)
        if hf_dir is None:
            from tiny_phi3 import build_tiny_phi3

            hf_dir = build_tiny_phi3(work / "hf")
            model_label = "tiny random Phi-3"
        else:
            model_label = str(hf_dir)
        if not onnx_dirs:
            from onnx_export import export_onnx

            for precision in ("fp32", "int4"):
                onnx_dirs[precision] = export_onnx(hf_dir, work / precision, precision, cache_dir=work / "cache")

        rows = [("A: transformers pipeline", *bench_pipeline(hf_dir, PROMPTS, args.max_new_tokens, args.repeats))]
        for label, folder in onnx_dirs.items():
            rows.append((f"B: onnxruntime-genai {label}", *bench_onnx(Path(folder), PROMPTS, args.max_new_tokens, args.repeats)))

    baseline = rows[0][1] / rows[0][2]
    print(f"\n{model_label}, CPU, greedy, up to {args.max_new_tokens} new tokens, "
          f"{len(PROMPTS)} prompts x {args.repeats} repeats")
    print(f"{'wrapper':<32} {'tokens':>7} {'seconds':>8} {'tokens/s':>10} {'vs A':>7}")
    for label, tokens, seconds in rows:
        rate = tokens / seconds
        print(f"{label:<32} {tokens:>7} {seconds:>8.2f} {rate:>10.0f} {rate / baseline:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
