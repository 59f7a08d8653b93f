"""Build a tiny, randomly initialised Phi-3 as a Hugging Face folder.

Tests and offline machines cannot download microsoft/Phi-3-mini-4k-instruct, but
they must exercise the same code paths: the same architecture (Phi3ForCausalLM),
the same tokenizer scheme (SentencePiece-style BPE with byte fallback and the
Phi-3 special tokens), the same chat template. Everything here is derived from a
fixed seed and a corpus embedded in this file, so two builds are byte-identical
and a test can rely on exact token ids.

    python tiny_phi3.py OUT_DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# Phi-3-mini-4k-instruct's own template (tokenizer_config.json on the hub).
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Same order as Phi-3: three SentencePiece specials, 256 byte tokens, merges,
# then the chat specials appended after the learned vocabulary.
LEADING_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
CHAT_SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]
VOCAB_SIZE = 768
DEFAULT_SEED = 1234

TRAINING_CORPUS = """\
The quick brown fox jumps over the lazy dog. A model is only as useful as the
people who can run it, so the stack starts with one command and keeps its data
in named volumes. Every service has a health check, and every secret is made on
the first start instead of being written into the repository.

The tracking server records runs, parameters, metrics and artifacts. A run has a
start time, an end time and a status. Parameters are strings; metrics are numbers
logged at a step, such as loss=0.25 at step 10 or accuracy=0.97 at step 200.
Artifacts are files: plots, tables, checkpoints and whole models.

The model registry gives each model a name and counts its versions: 1, 2, 3 and
so on. An alias such as champion or challenger points at one version, and a
client can load the model behind an alias without knowing the number. When the
challenger proves better, the operator promotes it, and the champion moves.

What is the capital of France? The capital of France is Paris. How many days are
there in a week? There are 7 days in a week. What time is it? It is 12:30.
Please write a short poem about the sea. The sea is wide, the sea is deep; it
sings the sailors off to sleep. Can you help me with my homework? Of course, I
can help you. Tell me a joke! Why did the chicken cross the road? To get to the
other side. Thank you very much; you are welcome.

Language models read text as tokens. A tokenizer splits words into pieces that
it has seen often, and falls back to single bytes for anything new, so no input
is ever unknown. Numbers like 2024, 3.14 and 1,000,000 are read digit by digit.
Punctuation (commas, periods, colons; quotes "like these" and 'these') stands
alone. The assistant answers the user, and the system message sets the rules.

In the morning the team checks the dashboards, reads the logs and looks at the
latest experiments. In the afternoon they train new models, compare the results
and write down what they learned. In the evening the servers keep running, the
backups are taken at midnight, and the next day starts again.

Hello! How are you today? I am fine, thanks. What would you like to do? I would
like to learn about machine learning, data science and software engineering.
Good questions lead to good answers; clear answers lead to better questions.
"""


def _train_tokenizer(corpus: str):
    """Train the Phi-3-style BPE tokenizer (a `tokenizers.Tokenizer`)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Phi-3's own normalizer; a Metaspace pre-tokenizer would be a different
    # tokenizer that onnxruntime-genai reads differently.
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    # Training only: keep merges inside words and never glue punctuation or
    # digits to anything, because onnxruntime-genai splits those before applying
    # merges. The saved tokenizer has no pre-tokenizer (like Phi-3's), and since
    # no learned merge crosses these boundaries, both runtimes agree on the ids.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("▁", behavior="merged_with_next"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE - len(CHAT_SPECIALS),
        special_tokens=LEADING_SPECIALS + BYTE_TOKENS,
        min_frequency=1,
        show_progress=False,
    )
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    tok.pre_tokenizer = None

    # The trainer may reset model options; rebuild the model explicitly so
    # byte_fallback and fuse_unk are certain to be in the saved file.
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    tok.model = BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)

    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in LEADING_SPECIALS]
        + [AddedToken(t, special=True, normalized=False, rstrip=False, lstrip=False) for t in CHAT_SPECIALS]
    )
    for i, name in enumerate(LEADING_SPECIALS + BYTE_TOKENS):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"tokenizer layout broken: {name!r} is not id {i}")
    return tok


def _write_tokenizer(tok, out: Path) -> dict[str, int]:
    tok.save(str(out / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in LEADING_SPECIALS + CHAT_SPECIALS}
    added = {
        str(ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in LEADING_SPECIALS + CHAT_SPECIALS
    }
    config = {
        # PreTrainedTokenizerFast loads tokenizer.json as is; LlamaTokenizer
        # would be rebuilt by transformers 5 into a different tokenizer.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": 4096,
        "padding_side": "left",
        "added_tokens_decoder": added,
        "chat_template": PHI3_CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    special_map = {
        "bos_token": "<s>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<unk>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, sort_keys=True) + "\n")
    return ids


def random_phi3(shape: dict, ids: dict[str, int], seed: int):
    """A Phi3ForCausalLM of the given shape with seeded random fp32 weights, Phi-3's
    special token ids (Phi3Config's defaults, 32000, lie outside a small vocabulary) and
    its stop tokens (<|endoftext|>, <|assistant|> and <|end|>)."""
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    config = Phi3Config(
        **shape,
        bos_token_id=ids["<s>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<s>"],
        eos_token_id=[ids["<|endoftext|>"], ids["<|assistant|>"], ids["<|end|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    return model


def build_tiny_phi3(out_dir: str | os.PathLike, seed: int = DEFAULT_SEED) -> Path:
    """Write a complete HF model folder for a tiny Phi-3 into `out_dir` and return it.

    The folder holds config.json, generation_config.json, model.safetensors,
    tokenizer.json, tokenizer_config.json and special_tokens_map.json; it loads
    with AutoModelForCausalLM / AutoTokenizer and converts with the
    onnxruntime-genai builder like the real model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = _train_tokenizer(TRAINING_CORPUS)
    ids = _write_tokenizer(tok, out)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)

    model = random_phi3(dict(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=256,
        # Equal sizes: otherwise the ONNX builder switches to LongRoPE.
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        tie_word_embeddings=False,
    ), ids, seed)
    model.save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    path = build_tiny_phi3(args.out_dir, seed=args.seed)
    print(f"tiny Phi-3 written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
