"""The classifier network and its speed-ups: each speed-up keeps what the network computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from textclf.model.network import ClassifierNetwork, build_network
from textclf.model.speedups import FastDropout, FirstTokenLayer


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_dropout_keeps_the_right_share_and_the_mean(dtype: torch.dtype) -> None:
    dropout = FastDropout(0.1).train()
    x = torch.ones(200, 1000, dtype=dtype, requires_grad=True)
    y = dropout(x)
    assert y.dtype == dtype
    assert (y == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert y.float().mean().item() == pytest.approx(1.0, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)  # the gradient flows through the kept elements only
    assert torch.equal(dropout.eval()(x), x)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_first_token_only_last_layer_gives_the_same_logits_and_gradients(
    tiny_model_dir: Path, attention: str
) -> None:
    def build(skip: bool) -> ClassifierNetwork:
        torch.manual_seed(0)  # the same head
        return build_network(
            3, pretrained=str(tiny_model_dir), skip_unused_tokens=skip, attn_implementation=attention
        ).eval()

    full, fast = build(False), build(True)
    assert isinstance(fast.encoder.encoder.layer[-1], FirstTokenLayer)
    assert not isinstance(full.encoder.encoder.layer[-1], FirstTokenLayer)
    assert list(fast.state_dict()) == list(full.state_dict())  # checkpoints and exports are unchanged
    ids = torch.randint(5, 30, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[3, 2:] = 0, 0
    logits = [model(ids, mask) for model in (full, fast)]
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-5, atol=1e-6)
    for output in logits:
        output.pow(2).sum().backward()
    for (name, a), b in zip(full.named_parameters(), fast.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_residual_stream_is_bf16_under_bf16_autocast_only(tiny_model_dir: Path) -> None:
    def build(bf16_residual: bool) -> ClassifierNetwork:
        torch.manual_seed(0)
        return build_network(2, pretrained=str(tiny_model_dir), bf16_residual=bf16_residual).eval()

    plain, fast = build(False), build(True)
    ids, mask = torch.randint(5, 30, (3, 9)), torch.ones(3, 9, dtype=torch.long)
    assert fast.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.dtype == torch.float32
    torch.testing.assert_close(fast(ids, mask), plain(ids, mask), rtol=0, atol=0)  # no autocast: unchanged
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.dtype == torch.bfloat16
        assert plain.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.dtype == torch.float32
        torch.testing.assert_close(fast(ids, mask).float(), plain(ids, mask).float(), rtol=0.05, atol=0.05)


def test_dropout_settings_reach_the_encoder_and_null_keeps_its_own(tiny_model_dir: Path) -> None:
    def rates(model: ClassifierNetwork) -> tuple[float, float, float, float]:
        layer = model.encoder.encoder.layer[0]
        return (
            layer.attention.self.dropout.p,
            layer.attention.output.dropout.p,
            layer.output.dropout.p,
            model.encoder.embeddings.dropout.p,
        )

    tuned = build_network(2, pretrained=str(tiny_model_dir), attention_dropout=0.05, hidden_dropout=0.2)
    assert rates(tuned) == (0.05, 0.2, 0.2, 0.2)
    assert tuned.model.dropout.p == 0.1  # model.net.dropout is the head's own (BERT: classifier_dropout)
    assert rates(build_network(2, pretrained=str(tiny_model_dir), attention_dropout=None)) == (0.1, 0.1, 0.1, 0.1)
    # a checkpoint rebuilds the encoder from its saved config: the same rates
    rebuilt = build_network(**{**tuned.spec, "pretrained": "unused"})
    assert rates(rebuilt) == (0.05, 0.2, 0.2, 0.2)


def test_pretrained_weights_are_read_into_memory_not_mapped_from_their_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A mapped file's pages are copied on the first write: the first optimizer step paid for all of them."""
    import shutil

    weights_dir = shutil.copytree(tiny_model_dir, tmp_path / "weights")  # a path no other test has mapped
    _network = build_network(2, pretrained=str(weights_dir))  # alive while the maps are read
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if str(weights_dir) in line]
    assert (weights_dir / "model.safetensors").is_file() and not mapped


def test_weights_saved_in_bf16_are_trained_and_rebuilt_in_fp32(tiny_bf16_model_dir: Path) -> None:
    """transformers 5 loads a model in the dtype it was saved in: bf16 weights would be trained as bf16."""
    network = build_network(2, pretrained=str(tiny_bf16_model_dir))
    rebuilt = build_network(2, pretrained=str(tiny_bf16_model_dir), model_config=network.spec["model_config"])
    assert network.spec["model_config"]["dtype"] == "bfloat16"  # what the saved config says
    assert {p.dtype for p in network.parameters()} == {p.dtype for p in rebuilt.parameters()} == {torch.float32}


def test_only_bert_style_encoders_get_a_first_token_last_layer() -> None:
    from transformers import (
        DistilBertConfig,
        DistilBertModel,
        RobertaConfig,
        RobertaModel,
    )

    from textclf.model.speedups import first_token_last_layer

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    roberta = RobertaModel(RobertaConfig(**small))
    ids = torch.randint(3, 50, (2, 9))
    before = roberta.eval()(input_ids=ids).pooler_output
    assert first_token_last_layer(roberta)
    torch.testing.assert_close(roberta(input_ids=ids).pooler_output, before)
    distilbert = DistilBertModel(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=50))
    assert not first_token_last_layer(distilbert)


def test_a_new_head_gets_pytorch_initialisation_and_a_pretrained_head_is_kept(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import BertForSequenceClassification

    fresh = build_network(2, pretrained=str(tiny_model_dir)).model.classifier.weight
    bound = 1 / fresh.shape[1] ** 0.5  # nn.Linear's default: uniform within ±1/sqrt(fan_in)
    assert fresh.abs().max() <= bound and fresh.std() > 0.5 * bound / 3**0.5  # not transformers' N(0, 0.02)
    classifier = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    torch.nn.init.constant_(classifier.classifier.weight, 0.25)
    classifier.save_pretrained(tmp_path / "fine-tuned")
    kept = build_network(2, pretrained=str(tmp_path / "fine-tuned")).model.classifier.weight
    assert torch.equal(kept, torch.full_like(kept, 0.25))


def test_a_pretrained_classifier_for_other_labels_gets_a_new_head(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).save_pretrained(tmp_path / "two")
    net = build_network(3, pretrained=str(tmp_path / "two"))
    assert net.model.classifier.out_features == 3
    assert net(torch.randint(5, 30, (2, 7)), torch.ones(2, 7, dtype=torch.long)).shape == (2, 3)


@pytest.mark.parametrize(
    ("model_type", "settings", "keys"),
    [
        (
            "distilbert",
            {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64},
            ("attention_dropout", "dropout", "seq_classif_dropout"),
        ),
        (
            "deberta-v2",
            {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
            ("attention_probs_dropout_prob", "hidden_dropout_prob", "cls_dropout"),
        ),
    ],
)
def test_dropout_settings_reach_architectures_that_name_them_otherwise(
    tmp_path: Path, model_type: str, settings: dict, keys: tuple
) -> None:
    from transformers import AutoConfig, AutoModel

    AutoModel.from_config(AutoConfig.for_model(model_type, vocab_size=40, **settings)).save_pretrained(tmp_path)
    config = build_network(
        2, pretrained=str(tmp_path), attention_dropout=0.05, hidden_dropout=0.2, dropout=0.3
    ).model.config
    assert tuple(getattr(config, key) for key in keys) == (0.05, 0.2, 0.3)


@pytest.mark.parametrize("head", ["mean", "cls"])
def test_normalize_gives_the_head_unit_length_embeddings_in_the_same_direction(tiny_model_dir: Path, head: str) -> None:
    def build(normalize: bool) -> ClassifierNetwork:
        torch.manual_seed(0)
        return build_network(2, pretrained=str(tiny_model_dir), head=head, normalize=normalize).eval()

    plain, unit = build(False), build(True)
    ids, mask = torch.randint(5, 30, (3, 9)), torch.ones(3, 9, dtype=torch.long)
    mask[1, 4:] = 0
    raw, scaled = plain.pooled(ids, mask), unit.pooled(ids, mask)
    torch.testing.assert_close(scaled.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(scaled * raw.norm(dim=-1, keepdim=True), raw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(unit(ids, mask), unit.head(scaled))
    with pytest.raises(ValueError, match="^model.net.normalize=true: the native head pools inside"):
        build_network(2, pretrained=str(tiny_model_dir), head="native", normalize=True)
