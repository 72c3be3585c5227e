"""The names a run's checkpoints go by, in its output folder and in its MLflow artifacts. No Keras: the tracking side
(closing a dead run, finding a run to resume before TensorFlow loads) reads them too; `checkpoints` writes them."""

FOLDER = "checkpoints"
BEST = "best.keras"
LAST = "last.keras"
STATE = "state.json"
