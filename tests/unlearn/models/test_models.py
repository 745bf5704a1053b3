"""Models: tiny factory, HF layout, safetensors-only loading, S3 round trip, prompt masking."""

from __future__ import annotations

import pytest
import torch

from cli import main
from unlearn.errors import ModelError
from unlearn.models import IGNORE_INDEX, encode_prompt, encode_qa, load_model, save_model


def test_tiny_model_loads_with_plain_auto_classes(nano_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(nano_model_dir)
    tok = AutoTokenizer.from_pretrained(nano_model_dir)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tok)
    ids = tok("Where was Stel born?")["input_ids"]
    assert tok.decode(ids) == "Where was Stel born?"


def test_encode_qa_masks_prompt_and_ends_with_eos(nano_model_dir):
    _, tok = load_model(nano_model_dir)
    ex = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.")
    prompt = encode_prompt(tok, "Where was Ann born?")
    n = len(prompt)
    assert ex["input_ids"][:n] == prompt
    assert ex["labels"][:n] == [IGNORE_INDEX] * n
    assert ex["labels"][n:] == ex["input_ids"][n:]
    assert ex["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(ex["input_ids"][n:-1]).strip() == "Ann was born in Oslo."
    short = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.", max_length=n + 2)
    assert len(short["input_ids"]) == n + 2


def train_a_few_steps(model, tok, steps: int = 3) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ex = encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.")
    ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor([ex["labels"]])
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_s3_round_trip_gives_identical_logits(nano_model_dir, s3_bucket):
    model, tok = load_model(nano_model_dir)
    train_a_few_steps(model, tok)
    url = f"{s3_bucket}/models/trained"
    digest = save_model(model, tok, url)
    loaded, tok2 = load_model(url)
    ids = torch.tensor(
        [encode_qa(tok, "Where was Ann born?", "Ann was born in Oslo.")["input_ids"]]
    )
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert tok2.get_vocab() == tok.get_vocab()
    from unlearn.models import model_identity

    assert model_identity(url) == digest


def test_pickle_weights_refused(nano_model_dir, tmp_path):
    import shutil

    bad = tmp_path / "pickled"
    shutil.copytree(nano_model_dir, bad)
    for p in bad.glob("*.safetensors"):
        p.unlink()
    torch.save({"w": torch.zeros(1)}, bad / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"only pickle weights \(pytorch_model\.bin\)"):
        load_model(bad)


def test_model_dir_without_weights_or_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing")


def test_save_refuses_to_overwrite(nano_model_dir, tmp_path):
    from unlearn.errors import OutputExistsError

    model, tok = load_model(nano_model_dir)
    save_model(model, tok, tmp_path / "m")
    before = sorted(p.name for p in (tmp_path / "m").iterdir())
    with pytest.raises(OutputExistsError):
        save_model(model, tok, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == before


def test_model_tiny_cli(tiny_data, tmp_path, capsys):
    assert (
        main(
            [
                "model",
                "tiny",
                "--out",
                str(tmp_path / "m"),
                "--data",
                str(tiny_data),
                "--size",
                "nano",
                "--vocab-size",
                "400",
            ]
        )
        == 0
    )
    model, tok = load_model(tmp_path / "m")
    assert model.config.hidden_size == 64 and len(tok) == 400
    assert (
        main(
            [
                "model",
                "tiny",
                "--out",
                str(tmp_path / "m2"),
                "--data",
                str(tiny_data),
                "--size",
                "huge",
            ]
        )
        == 2
    )
    assert "model size 'huge' is unknown" in capsys.readouterr().err
