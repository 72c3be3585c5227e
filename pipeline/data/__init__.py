"""The data sources: one `Dataset` (train / validation / test) from the `data` config group.

One reader module per source, as in conf/data/ (digits, mnist, fashion_mnist, npz, images), each with
`read(settings)` and `source_paths(settings)`; `checks` turns raw arrays into checked images and labels,
`splits` carves held-out sets, `load` picks the reader and keeps the last dataset. Every bad input is a
one-line `PipelineError`. No TensorFlow here (only Keras's downloader, when a file must be fetched), so the
CLI reads and checks the data before TensorFlow loads.
"""

from pipeline.data.dataset import Dataset
from pipeline.data.load import load_data

__all__ = ["Dataset", "load_data"]
