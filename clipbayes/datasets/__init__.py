"""Dataset readers for CoOp's benchmarks and for users' own data, registered in Dassl's ``DATASET_REGISTRY``.

Importing this package registers: ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101,
FGVCAircraft, SUN397, DescribableTextures, EuroSAT, UCF101, ImageNetV2, ImageNetSketch, ImageNetA, ImageNetR,
ImageFolderDataset and CSVDataset, and the procedural toy world (ToyWorld, ToyWorldShift, ToyWorldPhoto;
clipbayes.toyworld). Call :func:`add_dataset_config` on the config before merging yaml files.
See DATASETS.md for the on-disk layout, and ``python -m clipbayes.datasets.check`` to verify a data root.
"""
from clipbayes.compat import import_dassl

import_dassl()

from .config import add_dataset_config  # noqa: E402
from .templates import DATASET_TEMPLATES, ENSEMBLE_TEMPLATES, template_for, template_from_cfg  # noqa: E402
from .errors import (DatasetError, DatasetFileMissingError, MissingImagesError,  # noqa: E402
                     SplitFormatError)
from .base import CoOpDataset  # noqa: E402
from .benchmarks import (Caltech101, DescribableTextures, EuroSAT, FGVCAircraft, Food101,  # noqa: E402
                         OxfordFlowers, OxfordPets, StanfordCars, SUN397, UCF101)
from .imagenet import ImageNet, ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2  # noqa: E402
from .custom import CSVDataset, ImageFolderDataset  # noqa: E402
from .sources import BENCHMARKS, SOURCES  # noqa: E402
from .subsample import subsample_classes  # noqa: E402
from .fewshot import fewshot_subset  # noqa: E402
from clipbayes.toyworld.dataset import ToyWorld, ToyWorldPhoto, ToyWorldShift  # noqa: E402,F401  (registers them)

READERS = {
    cls.__name__: cls for cls in (
        ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101, FGVCAircraft, SUN397,
        DescribableTextures, EuroSAT, UCF101, ImageNetV2, ImageNetSketch, ImageNetA, ImageNetR,
        ImageFolderDataset, CSVDataset)
}

__all__ = [
    "add_dataset_config", "DATASET_TEMPLATES", "ENSEMBLE_TEMPLATES", "template_for", "template_from_cfg",
    "DatasetError", "DatasetFileMissingError", "MissingImagesError", "SplitFormatError", "CoOpDataset",
    "READERS", "BENCHMARKS", "SOURCES", "subsample_classes", "fewshot_subset",
] + list(READERS)
