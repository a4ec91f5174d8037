"""Data for training, with nothing downloaded: `Dataset` (tensors), `DatasetSpec`
(which data, as data, for store keys), the Boolean tasks' data, scikit-learn's
bundled digits, a user's embeddings file, and images for the conv models.

    >>> from fci.data import digits
    >>> d = digits(seed=0)
    >>> d.n_in, d.n_out, d.loss
    (64, 10, 'ce')
"""

from fci.data.datasets import (
                               EMBEDDING_KEYS,
                               Dataset,
                               boolean,
                               class_ids,
                               digits,
                               file_sha256,
                               load_embeddings,
                               load_once,
                               task_dataset,
                               task_name,
)
from fci.data.images import IMAGE_KEYS, ImageDataset, digit_images, load_images
from fci.data.spec import DATASET_KINDS, DatasetKind, DatasetSpec, register_dataset_kind

__all__ = ["Dataset", "DatasetSpec", "DatasetKind", "DATASET_KINDS", "register_dataset_kind", "digits", "load_embeddings",
           "boolean", "task_dataset", "task_name", "class_ids", "file_sha256", "load_once", "EMBEDDING_KEYS", "ImageDataset", "digit_images",
           "load_images", "IMAGE_KEYS"]
