"""Meta-learning algorithms, one module each, registered by name in :data:`ALGORITHMS`."""

from app.meta.algorithms.anil import ANIL
from app.meta.algorithms.base import AdaptOptions, MetaLearner
from app.meta.algorithms.hypernet import HyperNet
from app.meta.algorithms.maml import MAML
from app.meta.algorithms.matchingnet import MatchingNet
from app.meta.algorithms.metasgd import MetaSGD
from app.meta.algorithms.neural_process import NeuralProcess
from app.meta.algorithms.protonet import ProtoNet
from app.meta.algorithms.protonet_backbone_finetune import ProtoNetBackboneFineTune
from app.meta.algorithms.protonet_encoder_finetune import ProtoNetEncoderFineTune
from app.meta.algorithms.protonet_finetune import ProtoNetFineTune
from app.meta.algorithms.protonet_softmax_head import ProtoNetSoftmaxHead
from app.meta.algorithms.reptile import Reptile

ALGORITHMS: dict[str, type[MetaLearner]] = {
    cls.name: cls
    for cls in (MAML, MetaSGD, Reptile, ANIL, ProtoNet, ProtoNetFineTune, ProtoNetSoftmaxHead,
                ProtoNetBackboneFineTune, ProtoNetEncoderFineTune, MatchingNet, NeuralProcess, HyperNet)
}

__all__ = ["ALGORITHMS", "AdaptOptions", "MetaLearner"]
