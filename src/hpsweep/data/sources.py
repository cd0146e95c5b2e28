"""What each dataset is: its files, their checksums, where it comes from, its classes.

Data only, no I/O. ``DATASETS`` is the registry that ``fetch`` and ``prepare``
look names up in; tests add entries for generated datasets (with the checksums
of the generated files), so the production entries below stay exactly as
published and are never weakened for a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpsweep.data import DataError


@dataclass(frozen=True)
class IdxFile:
    """One IDX .gz file and what it must contain.

    content_sha256: sha256 of the DECOMPRESSED bytes. Preferred: it survives
        recompression (Debian's dataset-fashion-mnist ships recompressed .gz
        files whose bytes differ from upstream, but whose content does not).
    gz_md5: md5 of the upstream .gz bytes, as upstream publishes it. Only used
        when content_sha256 is unknown; then only byte-identical copies of the
        upstream .gz verify (a recompressed mirror is rejected, not trusted).
    split: which official split the file belongs to.
    shape: the exact IDX dimensions the header must declare.
    """

    name: str
    kind: Literal["images", "labels"]
    split: Literal["train", "test"]
    shape: tuple[int, ...]
    content_sha256: str | None = None
    gz_md5: str | None = None


@dataclass(frozen=True)
class TinyExpect:
    """Counts a Tiny ImageNet-style tree must have (None: not checked)."""

    classes: int | None = None
    train_per_class: int | None = None
    val: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: Literal["idx", "tiny-imagenet", "csv"]
    # Official base URLs, tried after the mirrors when data.urls is empty.
    urls: tuple[str, ...] = ()
    # How a user provides the data when no source works (ends the DataError line).
    hint: str = ""
    classes: tuple[str, ...] = ()  # idx: label i -> name; others read names from the data
    files: tuple[IdxFile, ...] = ()  # idx only
    archive: str = ""  # tiny-imagenet: zip name at mirrors and URLs
    archive_md5: str | None = None  # md5 of the official zip; required for URL downloads
    tree: str = ""  # tiny-imagenet: top directory inside raw_dir/<name>/ and the zip
    expect: TinyExpect = TinyExpect()


def _mnist_like_files(table: dict[str, tuple[str | None, str | None]]) -> tuple[IdxFile, ...]:
    shapes = {
        "train-images-idx3-ubyte.gz": ("images", (60000, 28, 28)),
        "train-labels-idx1-ubyte.gz": ("labels", (60000,)),
        "t10k-images-idx3-ubyte.gz": ("images", (10000, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": ("labels", (10000,)),
    }
    return tuple(
        IdxFile(name, kind, "train" if name.startswith("train") else "test", shape,
                content_sha256=table[name][0], gz_md5=table[name][1])
        for name, (kind, shape) in shapes.items()
    )


# Fashion-MNIST. content_sha256: computed here from the decompressed files of
# Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), whose
# content is upstream's. gz_md5: the md5 column of the upstream README
# (zalandoresearch/fashion-mnist); unused while content_sha256 is set.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    kind="idx",
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    hint="apt-get install dataset-fashion-mnist (it installs /usr/share/datasets/fashion-mnist),"
    " or put the four .gz files in a directory and list it in data.mirrors",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    files=_mnist_like_files({
        "train-images-idx3-ubyte.gz": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "bb300cfdad3c16e7a12a480ee83cd310"),
    }),
)

# MNIST. No copy of MNIST is on these machines, so the sha256 of its
# decompressed content could not be computed or cross-checked here: it is left
# unknown (None) rather than guessed. gz_md5: the md5 of the upstream .gz files
# as published and used by torchvision and many others (identical in every
# source checked). So MNIST verifies only byte-identical upstream .gz files,
# plus the strict IDX header/shape check. Fill in content_sha256 once computed
# from a verified copy to accept recompressed mirrors too.
MNIST = DatasetSpec(
    name="mnist",
    kind="idx",
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    hint="put the four upstream MNIST .gz files (train-images-idx3-ubyte.gz, ...) in a directory"
    " and list it in data.mirrors, or list a reachable base URL in data.urls",
    classes=tuple(str(d) for d in range(10)),
    files=_mnist_like_files({
        "train-images-idx3-ubyte.gz": (None, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": (None, "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": (None, "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": (None, "ec29112dd5afa0611ce80d1b7f02629c"),
    }),
)

# Tiny ImageNet (CS231n). archive_md5: md5 of the official
# tiny-imagenet-200.zip (248,100,043 bytes) as published by the many loaders
# that download it. An extracted tree from a mirror is verified by structure and
# the official counts (200 classes x 500 train images, 10,000 labelled val).
TINY_IMAGENET = DatasetSpec(
    name="tiny-imagenet",
    kind="tiny-imagenet",
    urls=("http://cs231n.stanford.edu/",),
    hint="put tiny-imagenet-200.zip or the extracted tiny-imagenet-200/ directory in a directory"
    " and list it in data.mirrors",
    archive="tiny-imagenet-200.zip",
    archive_md5="90528d7ca1a48142e341f4ef8d21d0de",
    tree="tiny-imagenet-200",
    expect=TinyExpect(classes=200, train_per_class=500, val=10000),
)

# A user's CSV (label,pixel0..pixelN with a header, like Kaggle's
# fashion-mnist_train.csv); its only source is data.csv_path.
CSV = DatasetSpec(
    name="csv",
    kind="csv",
    hint="set data.csv_path to an existing file with a header line label,pixel0,...,pixelN",
)

# Where fetch puts a CSV dataset: raw_dir/csv/data.csv, whatever the source file's name.
CSV_FILE = "data.csv"

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (FASHION_MNIST, MNIST, TINY_IMAGENET, CSV)}


def get_spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DataError(
            f"unknown dataset {dataset!r}; data.dataset must be one of {', '.join(DATASETS)}"
        ) from None


def known_content(sha256: str) -> str | None:
    """Which registered file has this decompressed content (for clearer mismatch errors)."""
    for spec in DATASETS.values():
        for f in spec.files:
            if f.content_sha256 == sha256:
                return f"{spec.name}'s {f.name}"
    return None
