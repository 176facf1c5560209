"""Every kind of export hfssl writes, used by a project that has transformers and not hfssl: stock `Auto*` classes
and `pipeline`, no custom code (trust_remote_code is never set)."""

import json
import subprocess
import sys
import textwrap

from conftest import pretrain_speech

# Runs in a fresh interpreter that never imports hfssl; argv[1] holds the export paths and the expected labels.
OTHER_PROJECT = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    from transformers import (
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForAudioClassification,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        pipeline,
    )

    given = json.loads(sys.argv[1])
    rate = 16000
    wave = (0.1 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    seen = {}

    # the masked-LM export: fill-mask answers scored tokens, feature-extraction one vector per token
    mlm = given["mlm"]
    tokenizer = AutoTokenizer.from_pretrained(mlm)
    model, info = AutoModelForMaskedLM.from_pretrained(mlm, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    answers = pipeline("fill-mask", model=mlm)(f"the cook boiled the {tokenizer.mask_token} .", top_k=5)
    assert len(answers) == 5 and all({"score", "token", "token_str", "sequence"} <= set(a) for a in answers)
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-5, scores
    assert all(a["token_str"].strip() and tokenizer.mask_token not in a["sequence"] for a in answers)
    features = pipeline("feature-extraction", model=mlm)("the cook boiled the soup .", return_tensors=True)
    assert features.shape[0] == 1 and features.shape[1] > 2 and features.shape[2] == model.config.hidden_size
    seen["mlm"] = answers[0]["token_str"]

    # speech encoders: the stock base class, and every encoder weight used by an audio classifier
    for key in ("wav2vec2", "conformer"):
        path = given[key]
        encoder, info = AutoModel.from_pretrained(path, output_loading_info=True)
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), (key, info)
        classifier, info = AutoModelForAudioClassification.from_pretrained(
            path, num_labels=3, output_loading_info=True
        )
        assert {k.split(".")[0] for k in info["missing_keys"]} <= {"projector", "classifier"}, (key, info)
        assert not info["unexpected_keys"] and not info["mismatched_keys"], (key, info)
        extractor = AutoFeatureExtractor.from_pretrained(path)
        inputs = extractor([wave], sampling_rate=rate, return_tensors="pt")
        hidden = encoder(**inputs).last_hidden_state
        assert hidden.shape[0] == 1 and hidden.shape[1] > 10 and hidden.shape[2] == encoder.config.hidden_size
        assert classifier(**inputs).logits.shape == (1, 3)
        seen[key] = type(encoder).__name__

    # the classifiers answer with the task's label names
    path = given["text_classifier"]
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert sorted(model.config.id2label.values()) == sorted(given["text_labels"])
    answers = pipeline("text-classification", model=path)("Lena chopped an onion for the soup.", top_k=None)
    assert sorted(a["label"] for a in answers) == sorted(given["text_labels"]), answers
    assert abs(sum(a["score"] for a in answers) - 1) < 1e-4
    seen["text_classifier"] = answers[0]["label"]

    path = given["audio_classifier"]
    model = AutoModelForAudioClassification.from_pretrained(path)
    assert sorted(model.config.id2label.values()) == sorted(given["audio_labels"])
    classify = pipeline("audio-classification", model=path)
    answers = classify({"raw": wave, "sampling_rate": rate}, top_k=len(given["audio_labels"]))
    assert sorted(a["label"] for a in answers) == sorted(given["audio_labels"]), answers
    assert abs(sum(a["score"] for a in answers) - 1) < 1e-4
    seen["audio_classifier"] = answers[0]["label"]

    assert "hfssl" not in sys.modules
    print(json.dumps(seen))
    """
)


def test_every_export_loads_without_hfssl(mlm_export, speech_export, text_classifier, audio_classifier, tmp_path):
    conformer = pretrain_speech(tmp_path / "conformer", arch="wav2vec2-conformer")
    given = {
        "mlm": str(mlm_export),
        "wav2vec2": str(speech_export),
        "conformer": str(conformer),
        "text_classifier": str(text_classifier / "final"),
        "text_labels": json.loads((text_classifier / "metrics.json").read_text())["labels"],
        "audio_classifier": str(audio_classifier / "final"),
        "audio_labels": json.loads((audio_classifier / "metrics.json").read_text())["labels"],
    }
    assert "trust_remote_code" not in OTHER_PROJECT
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROJECT, json.dumps(given)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["wav2vec2"] == "Wav2Vec2Model" and seen["conformer"] == "Wav2Vec2ConformerModel"
    assert seen["text_classifier"] in given["text_labels"] and seen["audio_classifier"] in given["audio_labels"]
    assert not any(label.startswith("LABEL_") for label in given["text_labels"] + given["audio_labels"])
