"""An independent torch.nn ResNet in torchvision's layout and key names (torchvision is not installed).

Written from torchvision's `resnet.py` structure: `Bottleneck` with the stride on conv2 (v1.5),
`downsample = Sequential(conv1x1(stride), BatchNorm2d)`, state-dict keys `conv1.weight`,
`bn1.running_mean`, `layer1.0.conv1.weight`, `layer1.0.downsample.0.weight`, `layer1.0.downsample.1.*`,
`fc.*`. Used as the reference for `reid_jax.models.torchvision_import` and the trunk's forward pass.
"""

import torch
from torch import nn


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * self.expansion)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


class TorchResNet(nn.Module):
  """torchvision ResNet; `forward` returns layer4's map (NCHW), `fc` exists only for its keys."""

  def __init__(self, layers=(3, 4, 6, 3), base_width=64, last_stride=2, num_classes=1000):
    super().__init__()
    self.inplanes = base_width
    self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(base_width)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(base_width, layers[0])
    self.layer2 = self._make_layer(base_width * 2, layers[1], stride=2)
    self.layer3 = self._make_layer(base_width * 4, layers[2], stride=2)
    self.layer4 = self._make_layer(base_width * 8, layers[3], stride=last_stride)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(base_width * 8 * Bottleneck.expansion, num_classes)

  def _make_layer(self, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
          nn.BatchNorm2d(planes * Bottleneck.expansion))
    layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * Bottleneck.expansion
    layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> None:
  """Give every BatchNorm non-trivial gamma, beta, running mean and running var (so a swapped
  mapping changes the output), and the counters a value, as a trained checkpoint has."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.weight.copy_(0.5 + torch.rand(n, generator=generator))
        module.bias.copy_(0.2 * torch.randn(n, generator=generator))
        module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
        module.num_batches_tracked.fill_(1000)


def state_dict_numpy(model: nn.Module) -> dict:
  """The model's state dict as numpy arrays (for safetensors.numpy.save_file)."""
  return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
