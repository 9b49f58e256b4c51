"""Public names of `reid_jax.models` (see WORKSPACE.md for the layout); imported on first use."""

from reid_jax import _exports

_NAMES = {
    "ResNet": "resnet",
    "ResNet50": "resnet",
    "SmallResNet": "resnet",
    "Bottleneck": "resnet",
    "build_backbone": "resnet",
    "ReIDNet": "heads",
    "build_reid_net": "heads",
    "test_descriptor": "heads",
    "global_average_pool": "heads",
    "AttributeNet": "attribute_net",
    "load_torchvision_resnet50": "torchvision_import",
    "import_torchvision_resnet": "torchvision_import",
    "export_torchvision_resnet": "torchvision_import",
    "load_trunk": "torchvision_import",
    "merge_backbone": "torchvision_import",
    "Generator": "stargan",
    "Discriminator": "stargan",
    "load_torch_generator": "stargan",
    "Conv": "conv",
    "ARN": "arn",
    "ARNEncoder": "arn",
    "ARNDecoder": "arn",
    "ARNClassifier": "arn",
    "map_size_for": "arn",
    "ARNDraft": "arn",
    "merge_draft_trunk": "arn",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = _exports.lazy(__name__, _NAMES)
