"""The model layer: the network (a Hugging Face encoder and its head) and its one factory, the encoder's
speed-ups, LoRA, the tasks (losses, probabilities, metrics), calibration,
and a trained classifier read back safely from its checkpoint for inference. No Lightning here."""

from textclf.lazy import exports

API = {
    "build_network": "textclf.model.network",
    "ClassifierNetwork": "textclf.model.network",
    "make_task": "textclf.model.tasks",
    "task_of": "textclf.model.tasks",
    "TrainedClassifier": "textclf.model.trained",
    "load_trained": "textclf.model.loading",
    "read_checkpoint": "textclf.model.loading",
}
__all__ = list(API)
__getattr__ = exports(__name__, API)
