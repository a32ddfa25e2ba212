"""Installs the multi-task ranking pipeline and its `recsys` command."""
from setuptools import find_packages, setup

# The stack is pinned as a whole: these versions are verified to install
# together on Python 3.11 (TFT, tfx-bsl and Beam constrain each other tightly).
INSTALL_REQUIRES = [
    "tensorflow==2.21.*",
    "tf-keras==2.21.*",
    "tensorflow-recommenders==0.7.7",
    "apache-beam[gcp]==2.77.*",
    "tensorflow-transform==1.21.*",
    "tensorflow-serving-api",
    "grpcio",      # serving: gRPC client and the stand-in's gRPC server
    "aiohttp",     # serving: the stand-in's REST server
    "requests",    # serving: the REST client
    "tensorboard",
    "pandas",
    "pyarrow",
    "pydantic>=2.6",
    "pyyaml",
    "scikit-learn",
    "matplotlib",
]

setup(
    name="recsys-multitask",
    version="0.1.0",
    description="Multi-task CTR/CVR ranking: Beam + tf.Transform features, "
    "TFRS rankers, offline evaluation and TF Serving export.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["recsys*", "features*", "pipelines*", "serving*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=8", "pytest-xdist", "hypothesis"], "bench": ["psutil"]},
    entry_points={"console_scripts": ["recsys=recsys.cli:main"]},
)
