"""Shared behaviour of frozen teachers whose weights are not part of the student model."""
from typing import Iterator, Tuple

import torch.nn as nn
from mmengine.model import BaseModule


class FrozenTeacher(BaseModule):
    """A target generator holding frozen networks that the parent model must not own.

    Adds over mmengine's ``BaseModule``: :meth:`_freeze` stores a network *outside* the
    registered submodules, so that its weights are not in the parent's ``state_dict()``
    (training checkpoints stay student-only; the config points to the teacher's file) and not
    seen by ``parameters()`` (optimizer constructors, DDP, FSDP, ``init_weights``);
    :meth:`_apply` still moves and casts it with the model (``.to()``, ``.cuda()``); it has
    ``requires_grad=False`` and stays in eval mode. Hidden rather than registered with
    state-dict hooks because, registered, mmengine's default optimizer constructor puts frozen
    parameters in its group and FSDP shards and all-gathers them every step (tests:
    ``test_clip_teacher.py``; ``test_hybrid_targets.py`` runs it under gloo DDP and FSDP).

    Subclasses load their weights in ``__init__``, hand each frozen network to :meth:`_freeze`
    and run it under ``torch.no_grad()``; their own buffers behave as usual.

    At build time :class:`~deepmim_mm.models.algorithms.DeepMIM` calls :meth:`match_student`
    with the student backbone (a teacher checks or adapts to its token grid and levels).
    """

    def match_student(self, backbone: nn.Module) -> None:
        """Check (or adapt to) the student backbone at build time; nothing by default."""

    def _freeze(self, name: str, module: nn.Module) -> nn.Module:
        """Hold ``module`` as ``self.<name>``, frozen and unregistered (see the class doc)."""
        module.requires_grad_(False)
        module.eval()
        frozen = self.__dict__.setdefault('_frozen_names', [])
        if name not in frozen:
            frozen.append(name)
        # Not registered as a submodule on purpose: nn.Module.__setattr__ would register it.
        self.__dict__[name] = module
        self.training = False
        return module

    def frozen_modules(self) -> Iterator[Tuple[str, nn.Module]]:
        """``(name, module)`` of every frozen network this teacher holds."""
        for name in self.__dict__.get('_frozen_names', []):
            yield name, self.__dict__[name]

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda()/.half() reach the unregistered networks too.
        for _, module in self.frozen_modules():
            module._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        """Always eval mode: the teacher is frozen."""
        return super().train(False)

    def init_weights(self) -> None:
        """Nothing to initialise: the weights come from the teacher's checkpoint."""
