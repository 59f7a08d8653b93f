"""Generation speed of the two wrappers on CPU: a table, not a test.

Wrapper A is the transformers text-generation pipeline; wrapper B is
onnxruntime-genai through Phi3OnnxModel, once with fp32 and once with int4
weights. By default everything runs on the tiny random Phi-3 built on the spot,
where the numbers measure per-token overhead rather than arithmetic; pass
--hf-dir and --onnx-dir to time real folders instead.

--real-shape builds random-weight models of Phi-3-mini-4k's real shape (hidden
3072, intermediate 8192, 32 heads, vocab 32064) with fewer than its 32 layers,
times A in fp32 and bf16 and B in int4 and fp32, each in its own process (peak
RSS from wait4), and extrapolates to 32 layers with a straight line through the
layer counts given (or, with one count, in proportion to the weights read per
token). Threads are pinned (--threads) for both runtimes, and every call makes
exactly --max-new-tokens tokens (EOS suppressed: min_new_tokens for
transformers, search.min_length in genai_config.json for onnxruntime-genai).
Each variant is timed in --rounds rounds and its best round counts; the CPU
share each round got shows how much a shared machine disturbed it. Results go
to results.json in --work-dir; --report prints them again.

    python benchmark.py [--max-new-tokens 128] [--repeats 2]
    python benchmark.py --hf-dir HF --onnx-dir fp32=DIR --onnx-dir int4=DIR
    python benchmark.py --real-shape --layers 12 --rounds 3 [--threads 2] [--max-new-tokens 32]
    python benchmark.py --real-shape --layers 2,7,12 --work-dir DIR
    python benchmark.py --report DIR/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
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


# ---------------------------------------------------------------- real shape

# Phi-3-mini-4k-instruct's config.json except the number of layers (set per
# run) and the special token ids, which are the tiny tokenizer's (all below 768,
# so valid ids of the 32064-entry vocabulary). Phi3Config's rope defaults are
# Phi-3-mini-4k's (theta 10000, no scaling); equal position sizes keep the ONNX
# builder on Phi3MiniModel rather than LongRoPE.
PHI3_MINI_SHAPE = dict(
    hidden_size=3072,
    intermediate_size=8192,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32064,
    max_position_embeddings=4096,
    original_max_position_embeddings=4096,
    sliding_window=2047,
    rms_norm_eps=1e-5,
    hidden_act="silu",
    tie_word_embeddings=False,
)
FULL_LAYERS = 32
_H, _I, _V = 3072, 8192, 32064
# qkv_proj (3·h·h) + o_proj (h·h) + gate_up_proj (2·h·i) + down_proj (i·h) + two norms.
LAYER_PARAMS = 4 * _H * _H + 3 * _H * _I + 2 * _H
# What every new token reads besides the layers: lm_head and the final norm
# (the embedding is a lookup of one row).
HEAD_PARAMS = _V * _H + _H
# Weight bytes per parameter, for the one-layer-count extrapolation of memory:
# int4 is block 32 with one fp32 scale per block.
BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "int4": 0.5 + 4 / 32}
REAL_PROMPTS = PROMPTS[:2]
# (label, wrapper, precision): A loads its HF folder with dtype="auto" like
# log_models.log_chat_model, so "bf16" is a bf16 checkpoint, as the real one is.
VARIANTS = [
    ("A transformers", "a", "fp32"),
    ("A transformers", "a", "bf16"),
    ("B ORT-genai", "b", "int4"),
    ("B ORT-genai", "b", "fp32"),
]
RESULT_PREFIX = "BENCHMARK-RESULT "


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _pin_threads(threads: int) -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def build_real_shape(out: Path, layers: int, seed: int) -> dict:
    """HF folders hf-fp32 and hf-bf16 of a random Phi-3-mini-shaped model with `layers` layers."""
    import torch

    from tiny_phi3 import TRAINING_CORPUS, _train_tokenizer, _write_tokenizer, random_phi3

    tok = _train_tokenizer(TRAINING_CORPUS)
    folders = {"fp32": out / "hf-fp32", "bf16": out / "hf-bf16"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        ids = _write_tokenizer(tok, folder)
    model = random_phi3({**PHI3_MINI_SHAPE, "num_hidden_layers": layers}, ids, seed)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folders["fp32"], safe_serialization=True)
    # The real checkpoint is bf16; wrapper A's dtype="auto" then runs in bf16.
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(folders["bf16"], safe_serialization=True)
    return {"params": params, "tokenizer_size": tok.get_vocab_size(with_added_tokens=True)}


def _prepare_onnx_folder(onnx_dir: Path, threads: int) -> None:
    """Pin onnxruntime's threads and suppress EOS in the folder's genai_config.json.

    search.min_length is a default the wrapper does not override (it sets only
    max_length, do_sample, temperature): with min_length = max_length the EOS
    logits are masked until the wrapper's max_length (prompt + new tokens) ends
    the generation, so every call makes exactly max_new_tokens tokens.
    """
    path = onnx_dir / "genai_config.json"
    config = json.loads(path.read_text())
    config["search"]["min_length"] = config["search"]["max_length"]
    options = config["model"]["decoder"].setdefault("session_options", {})
    options["intra_op_num_threads"] = threads
    options["inter_op_num_threads"] = 1
    path.write_text(json.dumps(config, indent=4) + "\n")


def _timed(generate, spec: dict) -> dict:
    """Counts and seconds of the timed calls, and the CPU share they got.

    cpu_share is the process's CPU time over wall time times the pinned
    threads: well below 1 means other processes on the machine took the cores.
    """
    prompts, tokens = spec["prompts"], spec["max_new_tokens"]
    generate(prompts[0], spec["warmup_tokens"])
    counts, seconds = [], 0.0
    cpu_start = time.process_time()
    for _ in range(spec["repeats"]):
        for prompt in prompts:
            start = time.perf_counter()
            counts.append(generate(prompt, tokens))
            seconds += time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {"counts": counts, "seconds": seconds, "cpu_share": cpu / (seconds * spec["threads"])}


def _worker_a(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    start = time.perf_counter()
    # As log_models.log_chat_model builds wrapper A.
    tokenizer = AutoTokenizer.from_pretrained(spec["hf_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype="auto").eval()
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    load_s = time.perf_counter() - start
    prompt_lens = {p: len(tokenizer(p)["input_ids"]) for p in spec["prompts"]}

    def generate(prompt: str, tokens: int) -> int:
        # min_new_tokens masks the EOS ids until `tokens` new tokens exist.
        out = pipe(prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, return_tensors=True)
        return len(out[0]["generated_token_ids"]) - prompt_lens[prompt]

    return {**_timed(generate, spec), "load_s": load_s,
            "dtype": str(model.dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


def _worker_b(spec: dict) -> dict:
    from phi3_onnx_model import Phi3OnnxModel

    start = time.perf_counter()
    model = Phi3OnnxModel.from_folder(spec["onnx_dir"])
    load_s = time.perf_counter() - start

    def generate(prompt: str, tokens: int) -> int:
        return len(model.generate_ids(prompt, max_new_tokens=tokens, do_sample=False))

    return {**_timed(generate, spec), "load_s": load_s, "dtype": spec["precision"]}


def _worker_export(spec: dict) -> dict:
    from onnx_export import export_onnx

    out = Path(spec["out_dir"])
    cache = out.parent / f"cache-{out.name}"
    try:
        export_onnx(spec["hf_dir"], out, spec["precision"], cache_dir=cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    _prepare_onnx_folder(out, spec["threads"])
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return {"bytes": size}


def _worker_build(spec: dict) -> dict:
    return build_real_shape(Path(spec["out_dir"]), spec["layers"], spec["seed"])


WORKERS = {"a": _worker_a, "b": _worker_b, "export": _worker_export, "build": _worker_build}


def worker_main(kind: str, spec_json: str) -> int:
    spec = json.loads(spec_json)
    if "threads" in spec:
        _pin_threads(spec["threads"])
    result = WORKERS[kind](spec)
    result["vm_hwm_kib"] = _vm_hwm_kib()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def run_child(kind: str, spec: dict, log_path: Path) -> dict:
    """Run one step in a fresh interpreter; its result plus wall time and peak RSS.

    Peak RSS is wait4's ru_maxrss: the child's high-water mark, or that of a
    grandchild it waited for (the ONNX builder), whichever is larger.
    """
    env = dict(os.environ)
    if "threads" in spec:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(spec["threads"])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n=== {kind} {json.dumps(spec)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=str(HERE))
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    result = next((json.loads(line[len(RESULT_PREFIX):]) for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)), None)
    if code != 0 or result is None:
        tail = "\n".join(log_path.read_text().splitlines()[-25:])
        raise RuntimeError(f"{kind} step failed (exit code {code}); last lines of {log_path}:\n{tail}")
    result["wall_s"] = wall
    result["peak_rss_kib"] = usage.ru_maxrss  # KiB on Linux
    result["loadavg"] = (load_before, os.getloadavg()[0])
    return result


def _gib(kib: float) -> float:
    return kib / 1024 / 1024


def _fit(points: list[tuple[int, float]], at: int) -> float:
    """Least-squares straight line through (layers, value), evaluated at `at`."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my + slope * (at - mx)


def _machine() -> str:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    versions = []
    for name in ("torch", "transformers", "onnxruntime-genai", "onnxruntime"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return f"{cpu}, {os.cpu_count()} cores, {_gib(mem_kib):.1f} GiB RAM, {platform.python_implementation()} {platform.python_version()}, {', '.join(versions)}"


def print_report(rows: list[dict], steps: list[dict], meta: dict) -> None:
    """The tables of a --real-shape run (also from its results.json: --report FILE)."""
    layer_counts, tokens, repeats = meta["layer_counts"], meta["max_new_tokens"], meta["repeats"]
    print(f"\nPhi-3-mini real shape (hidden 3072, intermediate 8192, 32 heads, vocab 32064), random weights (seed {meta['seed']})")
    print(f"machine: {meta['machine']}")
    print(f"threads: {meta['threads']} (torch.set_num_threads; genai_config intra_op_num_threads; OMP/MKL_NUM_THREADS)")
    print(f"greedy, exactly {tokens} new tokens per call (EOS suppressed), {len(REAL_PROMPTS)} short prompts x {repeats}, "
          "after a 4-token warm-up; time per call includes tokenizing and the prompt's prefill")
    print(f"each variant timed in {meta['rounds']} rounds (fresh process each, variants in rotation); tokens/s is the best "
          "round, 'rounds' lists all; CPU = CPU time / (wall x threads) of the best round's timed calls; "
          "peak RSS = highest of the rounds")
    print("tok/CPU-s = tokens/s / CPU share: the rate if the calls had had their cores to themselves "
          "(an estimate for a shared machine; spinning threads make it conservative)")
    header = (f"{'variant':<16} {'precision':<9} {'layers':>6} {'tokens/s':>9} {'ms/token':>9} {'peak RSS':>9} "
              f"{'vs A fp32':>9} {'CPU':>5} {'tok/CPU-s':>9}  rounds (tokens/s)")
    print("\n" + header)
    for layers in sorted(layer_counts, reverse=True):
        a32 = next(r for r in rows if r["layers"] == layers and r["label"].startswith("A") and r["precision"] == "fp32")
        for r in (r for r in rows if r["layers"] == layers):
            print(f"{r['label']:<16} {r['precision']:<9} {layers:>6} {r['tok_s']:>9.2f} {r['ms_tok']:>9.1f} "
                  f"{_gib(r['peak_rss_kib']):>7.2f} G {r['tok_s'] / a32['tok_s']:>8.2f}x {r['cpu_share']:>5.0%} "
                  f"{r['tok_s'] / r['cpu_share']:>9.2f}  "
                  + " ".join(f"{x:.2f}" for x in r["all_tok_s"])
                  + ("" if r["exact"] else f"  (counts {r['counts']}: not all {tokens})"))

    if len(layer_counts) > 1:
        method = (f"least-squares line of ms/token and of peak RSS against layers through {', '.join(map(str, layer_counts))} "
                  f"layers, evaluated at {FULL_LAYERS}")
    else:
        method = (f"ms/token scaled by weights read per token, ({FULL_LAYERS}·{LAYER_PARAMS / 1e6:.1f}M + {HEAD_PARAMS / 1e6:.1f}M) / "
                  f"(L·{LAYER_PARAMS / 1e6:.1f}M + {HEAD_PARAMS / 1e6:.1f}M) (decode is memory-bound); peak RSS plus "
                  f"({FULL_LAYERS} - L) layers of weights at the precision's bytes per parameter")
    print(f"\nextrapolated to {FULL_LAYERS} layers ({method}):")
    print(f"{'':<26} {'-- wall clock':<28} {'':>9} {'-- per CPU-second (tok/CPU-s)':<28}")
    print(f"{'variant':<16} {'precision':<9} {'tokens/s':>9} {'ms/token':>9} {'vs A fp32':>9} {'vs A bf16':>9} "
          f"{'tokens/s':>9} {'vs A fp32':>9} {'vs A bf16':>9} {'peak RSS':>9}")
    extrapolated, normalised = {}, {}
    for label, _, precision in VARIANTS:
        mine = [r for r in rows if r["label"] == label and r["precision"] == precision]
        if len(layer_counts) > 1:
            ms = _fit([(r["layers"], r["ms_tok"]) for r in mine], FULL_LAYERS)
            ms_cpu = _fit([(r["layers"], r["ms_tok"] * r["cpu_share"]) for r in mine], FULL_LAYERS)
            rss = _fit([(r["layers"], r["peak_rss_kib"]) for r in mine], FULL_LAYERS)
        else:
            (r,) = mine
            scale = (FULL_LAYERS * LAYER_PARAMS + HEAD_PARAMS) / (r["layers"] * LAYER_PARAMS + HEAD_PARAMS)
            ms, ms_cpu = r["ms_tok"] * scale, r["ms_tok"] * r["cpu_share"] * scale
            rss = r["peak_rss_kib"] + (FULL_LAYERS - r["layers"]) * LAYER_PARAMS * BYTES_PER_PARAM[precision] / 1024
        extrapolated[(label[0], precision)] = (ms, rss)
        normalised[(label[0], precision)] = ms_cpu
    for (wrapper, precision), (ms, rss) in extrapolated.items():
        label = next(lbl for lbl, w, p in VARIANTS if lbl[0] == wrapper and p == precision)
        ms_cpu = normalised[(wrapper, precision)]
        print(f"{label:<16} {precision:<9} {1000 / ms:>9.2f} {ms:>9.1f} "
              f"{extrapolated[('A', 'fp32')][0] / ms:>8.2f}x {extrapolated[('A', 'bf16')][0] / ms:>8.2f}x "
              f"{1000 / ms_cpu:>9.2f} {normalised[('A', 'fp32')] / ms_cpu:>8.2f}x {normalised[('A', 'bf16')] / ms_cpu:>8.2f}x "
              f"{_gib(rss):>7.2f} G")

    print("\nB int4 / A (goal: >= 3x):")
    def verdict(ratio: float) -> str:
        return f"{ratio:.2f}x -> {'met' if ratio >= 3 else 'NOT met'}"

    for layers in sorted(layer_counts, reverse=True):
        mine = {(r["label"][0], r["precision"]): r for r in rows if r["layers"] == layers}
        for ref in ("fp32", "bf16"):
            b, a = mine[("B", "int4")], mine[("A", ref)]
            print(f"  measured, {layers} layers: B int4 / A {ref} = {verdict(b['tok_s'] / a['tok_s'])} "
                  f"(per CPU-second {verdict((b['tok_s'] / b['cpu_share']) / (a['tok_s'] / a['cpu_share']))})")
    for ref in ("fp32", "bf16"):
        print(f"  extrapolated, {FULL_LAYERS} layers: B int4 / A {ref} = "
              f"{verdict(extrapolated[('A', ref)][0] / extrapolated[('B', 'int4')][0])} "
              f"(per CPU-second {verdict(normalised[('A', ref)] / normalised[('B', 'int4')])})")

    print("\npreparation steps (not part of the timings):")
    for s in steps:
        extra = f", {s['params'] / 1e9:.2f}B params" if "params" in s else f", folder {s['bytes'] / 2**30:.2f} GiB" if "bytes" in s else ""
        print(f"  {s['step']:<20} {s['layers']:>3} layers: {s['wall_s']:>6.0f} s, peak RSS {_gib(s['peak_rss_kib']):.2f} GiB{extra}")
    peak = max(x["peak_rss_kib"] for x in rows + steps)
    print(f"\nwall time of the whole run: {meta['wall_s'] / 60:.1f} min; highest peak RSS of any step: {_gib(peak):.2f} GiB; "
          f"1-minute load average at the start / end: {meta['load_start']:.1f} / {meta['load_end']:.1f}")


def real_shape_main(args) -> int:
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    layer_counts = sorted({int(x) for x in args.layers.split(",")})
    if not layer_counts or min(layer_counts) < 1 or max(layer_counts) > FULL_LAYERS:
        raise SystemExit(f"--layers must be numbers from 1 to {FULL_LAYERS}")
    tokens = args.max_new_tokens or 32
    repeats = args.repeats or 1
    base = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="phi3-real-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "benchmark.log"
    _log(f"work dir {base}; child output goes to {log_path}")
    common = {"threads": args.threads}
    bench = {**common, "prompts": REAL_PROMPTS, "max_new_tokens": tokens, "repeats": repeats, "warmup_tokens": 4}

    rows: list[dict] = []
    steps: list[dict] = []
    for layers in sorted(layer_counts, reverse=True):
        work = base / f"layers-{layers}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _log(f"{layers} layers: building the random HF model (fp32 and bf16 folders)")
        built = run_child("build", {"out_dir": str(work), "layers": layers, "seed": args.seed}, log_path)
        steps.append({"step": "build HF fp32+bf16", "layers": layers, **built})
        # int4 from the bf16 checkpoint, as the hub's int4 CPU build is made from
        # the bf16 original (and the builder needs ~0.2 GiB/layer less for it);
        # fp32 from the fp32 folder, so its weights equal A fp32's.
        for precision, source in (("int4", "bf16"), ("fp32", "fp32")):
            _log(f"{layers} layers: ONNX builder, {precision} from hf-{source}")
            out = run_child("export", {**common, "hf_dir": str(work / f"hf-{source}"), "out_dir": str(work / f"onnx-{precision}"),
                                        "precision": precision}, log_path)
            steps.append({"step": f"ONNX builder {precision}", "layers": layers, **out})
        # Rounds in rotation (A fp32, A bf16, B int4, B fp32, A fp32, ...), each
        # in a fresh process; a variant's row is its fastest round, the round
        # least disturbed by whatever else runs on the machine.
        rounds: dict[tuple[str, str], list[dict]] = {}
        for round_no in range(1, args.rounds + 1):
            for label, wrapper, precision in VARIANTS:
                if wrapper == "a":
                    spec = {**bench, "hf_dir": str(work / f"hf-{precision}")}
                else:
                    spec = {**bench, "onnx_dir": str(work / f"onnx-{precision}"), "precision": precision}
                result = run_child(wrapper, spec, log_path)
                total = sum(result["counts"])
                result.update(tokens=total, exact=all(c == tokens for c in result["counts"]),
                              tok_s=total / result["seconds"], ms_tok=1000 * result["seconds"] / total)
                rounds.setdefault((label, precision), []).append(result)
                _log(f"{layers} layers, round {round_no}: {label} {precision}: {result['tok_s']:.2f} tokens/s, "
                     f"CPU share {result['cpu_share']:.0%}, load {result['loadavg'][0]:.1f}, "
                     f"peak RSS {_gib(result['peak_rss_kib']):.2f} GiB")
        for (label, precision), results in rounds.items():
            best = max(results, key=lambda r: r["tok_s"])
            rows.append({"label": label, "precision": precision, "layers": layers, **best,
                         "all_tok_s": [r["tok_s"] for r in results],
                         "exact": all(r["exact"] for r in results),
                         "peak_rss_kib": max(r["peak_rss_kib"] for r in results)})
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started

    meta = {"seed": args.seed, "threads": args.threads, "rounds": args.rounds, "max_new_tokens": tokens,
            "repeats": repeats, "layer_counts": layer_counts, "machine": _machine(), "wall_s": wall,
            "load_start": load_start, "load_end": os.getloadavg()[0]}
    (base / "results.json").write_text(json.dumps({"rows": rows, "steps": steps, "meta": meta}, indent=1) + "\n")
    print_report(rows, steps, meta)
    if args.work_dir:
        print(f"results: {base / 'results.json'}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 128, or 32 with --real-shape")
    parser.add_argument("--repeats", type=int, default=None, help="default 2, or 1 with --real-shape")
    parser.add_argument("--hf-dir", type=Path, help="Hugging Face folder (default: build the tiny Phi-3)")
    parser.add_argument(
        "--onnx-dir", action="append", default=[], metavar="LABEL=DIR",
        help="onnxruntime-genai folder to time, repeatable (default: export the tiny model as fp32 and int4)",
    )
    real = parser.add_argument_group("real shape")
    real.add_argument("--real-shape", action="store_true", help="random-weight models of Phi-3-mini's real shape")
    real.add_argument("--layers", default="8", help="comma-separated layer counts, e.g. 4,12 (default 8)")
    real.add_argument("--threads", type=int, default=2, help="threads for both runtimes (default 2)")
    real.add_argument("--rounds", type=int, default=2, help="timing rounds per variant; the best counts (default 2)")
    real.add_argument("--seed", type=int, default=1234)
    real.add_argument("--work-dir", help="where the model folders go (default: a temporary folder)")
    real.add_argument("--keep", action="store_true", help="keep the model folders in --work-dir")
    real.add_argument("--report", type=Path, metavar="RESULTS_JSON", help="print the tables of an earlier run again")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        print_report(saved["rows"], saved["steps"], saved["meta"])
        return 0
    if args.real_shape:
        return real_shape_main(args)
    args.max_new_tokens = args.max_new_tokens or 128
    args.repeats = args.repeats or 2

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
