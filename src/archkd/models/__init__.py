"""Model zoo: a name -> factory registry of the standard KD architectures for small images.

Contract, shared by every model built with ``create_model(name, num_classes, in_channels, **kwargs)``:

- input ``(N, in_channels, H, W)`` with H, W >= 8 (global average pooling before the classifier) -> logits ``(N, num_classes)``;
  token models whose mixing is tied to a token grid (``mixer``) take only the image size recorded in their spec;
- ``model.stage_names``: ``named_modules()`` paths whose outputs are the stage feature maps, shallow to deep;
  the last one is the map the global pooling sees. Tap them with forward hooks; no model edits needed;
- ``model.feature_channels``: channel count of each stage output (sizes distillation projectors);
- ``model.stem_name`` / ``model.stem_channels``: the module path of the stem (the conv/BN/act before the first stage)
  and its output channels, a tap like the stages (DistPro's first feature); ``None`` for a model without a stem.
  Kept apart from ``stage_names`` so stage-indexed code (feature losses, stage counts) is unchanged;
- ``model.blocks()`` (stage-wise models: ``stagenet``): the network before its head as consecutive per-stage modules,
  each with what defines it (stage configuration and input channels), for blockwise distillation;
- ``model.archkd_spec`` / ``model_spec(model)``: a JSON-serialisable recipe; ``build_from_spec`` rebuilds it;
- Kaiming init from the global RNG (reproducible under ``torch.manual_seed``); traceable, ONNX-exportable
  (opset 17), channels_last-safe.

``archkd.models.supernet``: weight-sharing supernets of a family up to a largest spec (``create_supernet``,
``register_supernet``; ``stagenet`` built in): ``set_path(spec)`` selects a sub-network, ``extract(spec)`` returns it as
a standalone model of the family carrying the shared weights.
"""
from __future__ import annotations

from archkd.models.registry import build_from_spec, create_model, list_models, model_spec, register_model

# Importing the architecture modules registers them.
from archkd.models import mnas as _mnas  # noqa: E402,F401
from archkd.models import mobilenetv2 as _mobilenetv2  # noqa: E402,F401
from archkd.models import nago as _nago  # noqa: E402,F401
from archkd.models import mixer as _mixer, vit as _vit  # noqa: E402,F401
from archkd.models import resnet as _resnet  # noqa: E402,F401
from archkd.models import shufflenetv2 as _shufflenetv2  # noqa: E402,F401
from archkd.models import stagenet as _stagenet  # noqa: E402,F401
from archkd.models.wrn import wrn  # noqa: E402

__all__ = ["register_model", "create_model", "list_models", "model_spec", "build_from_spec", "wrn"]
