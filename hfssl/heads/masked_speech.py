"""Masked prediction on stock transformers speech encoders: the head HuBERT, BEST-RQ and masked log-mel reconstruction
put on `HubertModel`, `Wav2Vec2Model`, `WavLMModel`, `Data2VecAudioModel`, `Wav2Vec2ConformerModel` or
`Wav2Vec2BertModel` (log-mel filterbank input).

Every one of those encoders replaces the frames in `mask_time_indices` with its learned mask embedding; the head reads
the encoder's last hidden states and scores them against per-frame targets the collator brings as `labels`. What the
targets are (`MaskedSpeechConfig.target`) decides the head:

- clusters: class ids with no meaning of their own (HuBERT's k-means clusters); logits are cosine similarities
  between the projected frame and one learned embedding per class, over a temperature (HuBERT's head).
- codes: class ids (BEST-RQ's codes of a frozen random-projection quantizer, `random_quantizer`); a linear softmax
  layer over the codebook.
- features: real-valued frames (stacked, normalised log-mel frames; or a teacher's averaged top layers, data2vec);
  a linear layer regresses them, with an L1 or a squared-error loss (`regression_loss`).

The loss weighs masked frames 1 and unmasked frames `unmasked_weight` (HuBERT's alpha = 1, beta = 0 by default), each
term a mean over its frames. Nothing but the backbone leaves the run: export saves `model.backbone` as its own class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from hfssl.config import SPEECH_ARCHS
from hfssl.models.speech import frame_lengths, uses_filterbanks

BACKBONES = SPEECH_ARCHS
TARGETS = ("clusters", "codes", "features")


@strict
class MaskedSpeechConfig(PreTrainedConfig):
    r"""
    backbone_config (`dict` or `PreTrainedConfig`):
        The encoder's config (model_type one of wav2vec2, wav2vec2-conformer, hubert, wavlm, data2vec-audio,
        wav2vec2-bert).
    target (`str`, defaults to `"clusters"`):
        What is predicted per frame: clusters, codes or features (see the module docstring).
    num_classes (`int`, defaults to 100):
        clusters and codes: classes predicted per frame (k-means clusters, codebook entries).
    label_dim (`int`, defaults to 256):
        clusters: size of the projected frames and of the class embeddings.
    logits_temperature (`float`, defaults to 0.1):
        clusters: temperature of the cosine-similarity logits.
    target_dim (`int`, defaults to 160):
        features: values regressed per frame (log-mel bins times the 10 ms frames stacked per encoder frame).
    regression_loss (`str`, defaults to `"l1"`):
        features: "l1" (mean absolute error per frame) or "l2" (mean squared error per frame, data2vec's).
    unmasked_weight (`float`, defaults to 0.0):
        Weight of the unmasked frames' loss; masked frames weigh 1.
    mel_bins (`int`, defaults to 80):
        codes and features: log-mel bins of the targets (recorded so the targets can be rebuilt).
    codebook_dim (`int`, defaults to 16):
        codes: size of the random projection and codebook entries (recorded with `codebook_seed`).
    codebook_seed (`int`, defaults to 0):
        codes: seed of the frozen random quantizer (`random_quantizer` rebuilds it exactly).
    """

    model_type = "hfssl_masked_speech"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type=BACKBONES[0])}

    backbone_config: dict | PreTrainedConfig | None = None
    target: str = "clusters"
    num_classes: int = 100
    label_dim: int = 256
    logits_temperature: float = 0.1
    target_dim: int = 160
    regression_loss: str = "l1"
    unmasked_weight: float = 0.0
    mel_bins: int = 80
    codebook_dim: int = 16
    codebook_seed: int = 0
    initializer_range: float = 0.02

    def validate_architecture(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.regression_loss not in ("l1", "l2"):
            raise ValueError(f"regression_loss must be 'l1' or 'l2', got {self.regression_loss!r}")
        backbone = getattr(self.backbone_config, "model_type", None)
        if backbone is not None and backbone.replace("_", "-") not in BACKBONES:
            raise ValueError(f"backbone_config: {backbone} is not a supported encoder ({', '.join(BACKBONES)})")


@dataclass
class MaskedSpeechOutput(ModelOutput):
    """`loss` (with labels); per-frame `frame_losses` and `frame_correct` (classification), zero/False where no
    prediction was scored; the `masked` and `valid` (inside the clip, with a target) frames; the encoder's output."""

    loss: torch.Tensor | None = None
    frame_losses: torch.Tensor | None = None
    frame_correct: torch.Tensor | None = None
    masked: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class MaskedSpeechForPreTraining(PreTrainedModel):
    """A stock speech encoder (`self.backbone`) with a masked-prediction head; see the module docstring."""

    config_class = MaskedSpeechConfig
    base_model_prefix = "backbone"
    main_input_name = "input_values"
    input_modalities = "audio"
    supports_gradient_checkpointing = True

    def __init__(self, config: MaskedSpeechConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        # input_values (raw waveform), or input_features (filterbank frames) for wav2vec2-bert
        self.main_input_name = self.backbone.main_input_name
        hidden = config.backbone_config.hidden_size
        if config.target == "clusters":
            self.head = nn.Linear(hidden, config.label_dim)
            self.label_embeddings = nn.Parameter(torch.empty(config.num_classes, config.label_dim))
        elif config.target == "codes":
            self.head = nn.Linear(hidden, config.num_classes)
        else:
            self.head = nn.Linear(hidden, config.target_dim)
        self.post_init()

    def _init_weights(self, module):
        # The backbone initialises its own modules as its class does; the head is ours.
        if module is self:
            if hasattr(self, "label_embeddings"):
                nn.init.normal_(self.label_embeddings, std=self.config.initializer_range)
        elif module is getattr(self, "head", None):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "backbone") and module in self._backbone_modules():
            self.backbone._init_weights(module)

    def _backbone_modules(self) -> set:
        if getattr(self, "_backbone_module_set", None) is None:
            self._backbone_module_set = set(self.backbone.modules())
        return self._backbone_module_set

    def freeze_feature_encoder(self):
        """Freeze the convolutional front end (a filterbank encoder has none: nothing to do)."""
        if hasattr(self.backbone, "feature_extractor"):
            self.backbone.feature_extractor._freeze_parameters()

    def valid_frames(
        self, attention_mask: torch.Tensor | None, shape: tuple[int, int], device: torch.device
    ) -> torch.Tensor:
        """bool (B, T): the encoder frames inside each clip, from the input's attention mask (samples, or
        filterbank frames)."""
        batch, frames = shape
        if attention_mask is None:
            return torch.ones(batch, frames, dtype=torch.bool, device=device)
        if uses_filterbanks(self.config.backbone_config):
            return attention_mask[:, :frames].bool().to(device)
        lengths = frame_lengths(attention_mask.sum(-1).cpu(), self.config.backbone_config).to(device)
        return torch.arange(frames, device=device) < lengths[:, None]

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        input_features: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedSpeechOutput:
        """Args:
        input_values: (B, samples) normalised audio (raw-waveform encoders).
        attention_mask: (B, samples), 1 on audio, 0 on padding; (B, T) frames for filterbank input.
        mask_time_indices: bool (B, T): frames the encoder replaces with its mask embedding.
        labels: (B, T) class ids, -100 where there is none (clusters, codes); or (B, T, target_dim) values
            (features), of which the frames inside each clip count.
        input_features: (B, T, stacked mel bins) filterbank frames (wav2vec2-bert), instead of `input_values`.
        """
        out = self.backbone(
            input_values if input_features is None else input_features,
            attention_mask=attention_mask,
            mask_time_indices=mask_time_indices,
            output_hidden_states=output_hidden_states,
        )
        hidden = out.last_hidden_state
        batch, frames = hidden.shape[:2]
        valid = self.valid_frames(attention_mask, (batch, frames), hidden.device)
        masked = valid.clone() if mask_time_indices is None else mask_time_indices.bool() & valid
        result = MaskedSpeechOutput(
            masked=masked, valid=valid, last_hidden_state=hidden, hidden_states=out.hidden_states
        )
        if labels is None:
            return result
        if labels.dim() == 2:
            valid = valid & (labels >= 0)
            masked = masked & valid
        frame_losses = hidden.new_zeros(batch, frames, dtype=torch.float32)
        frame_correct = torch.zeros(batch, frames, dtype=torch.bool, device=hidden.device)
        loss = hidden.new_zeros((), dtype=torch.float32)
        weight = self.config.unmasked_weight
        for select, w in ((masked, 1.0), (valid & ~masked, weight)):
            if not select.any():
                continue
            with torch.set_grad_enabled(torch.is_grad_enabled() and w > 0):
                losses, correct = self._score(hidden[select], labels[select])
            frame_losses[select] = losses.detach()
            if correct is not None:
                frame_correct[select] = correct
            if w > 0:
                loss = loss + w * losses.mean()
        # Keeps every parameter in the graph when a batch has nothing to score (DDP expects all gradients).
        loss = loss + 0.0 * sum(p.sum() for p in self.head.parameters())
        result.loss, result.frame_losses, result.frame_correct = loss, frame_losses, frame_correct
        result.masked, result.valid = masked, valid
        return result

    def _score(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame losses (fp32) and, for classification, whether the top class is the target."""
        target = self.config.target
        predicted = self.head(hidden).float()
        if target == "features":
            error = predicted - labels.float()
            return (error.abs() if self.config.regression_loss == "l1" else error.square()).mean(-1), None
        if target == "clusters":
            embeddings = F.normalize(self.label_embeddings.float(), dim=-1)
            predicted = F.normalize(predicted, dim=-1) @ embeddings.T / self.config.logits_temperature
        losses = F.cross_entropy(predicted, labels, reduction="none")
        return losses, predicted.detach().argmax(-1) == labels


def random_quantizer(input_dim: int, codebook_size: int, codebook_dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    """BEST-RQ's frozen quantizer: a Xavier-uniform projection (input_dim, codebook_dim) and a standard-normal
    codebook (codebook_size, codebook_dim) with l2-normalised rows, the same for the same arguments everywhere."""
    generator = torch.Generator().manual_seed(seed)
    bound = (6.0 / (input_dim + codebook_dim)) ** 0.5
    projection = (torch.rand(input_dim, codebook_dim, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    codebook = F.normalize(torch.randn(codebook_size, codebook_dim, generator=generator, dtype=torch.float64), dim=-1)
    return projection.float(), codebook.float()


AutoConfig.register(MaskedSpeechConfig.model_type, MaskedSpeechConfig, exist_ok=True)
AutoModelForPreTraining.register(MaskedSpeechConfig, MaskedSpeechForPreTraining, exist_ok=True)
