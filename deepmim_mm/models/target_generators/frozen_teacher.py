"""Shared behaviour of frozen teachers whose weights are not part of the student model."""
import torch.nn as nn
from mmengine.model import BaseModule


class FrozenTeacher(BaseModule):
    """A target generator holding frozen networks that the parent model does not own.

    Adds over mmengine's ``BaseModule``: :meth:`_freeze` holds a frozen network, always in eval
    mode, outside ``state_dict()`` and ``parameters()`` (checkpoints, optimizers, DDP, FSDP),
    which :meth:`_apply` still moves and casts with the model. Hidden, as registered, mmengine's
    default optimizer would take its parameters and FSDP shard and gather them every step.

    Subclasses load their weights in ``__init__``, hand each network to :meth:`_freeze` and run
    it under ``torch.no_grad()``; ``DeepMIM`` calls :meth:`match_student` at build time.
    """

    def match_student(self, backbone: nn.Module) -> None:
        """Check (or adapt to) the student backbone at build time; nothing by default."""

    def _freeze(self, name: str, module: nn.Module) -> None:
        """Hold ``module`` as ``self.<name>``, frozen and unregistered (see the class doc)."""
        module.requires_grad_(False).eval()
        # In __dict__ on purpose: nn.Module.__setattr__ would register it as a submodule.
        self.__dict__[name] = module
        self.__dict__.setdefault('_frozen_names', set()).add(name)
        self.training = False

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda()/.half() reach the unregistered networks too.
        for name in self.__dict__.get('_frozen_names', ()):
            self.__dict__[name]._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        """Always eval mode: the teacher is frozen."""
        return super().train(False)

    def init_weights(self) -> None:
        """Nothing to initialise: the weights come from the teacher's checkpoint."""
