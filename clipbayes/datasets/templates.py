"""Hand-crafted zero-shot prompts per dataset (the ones CoOp's zero-shot CLIP baseline uses) and the ImageNet
prompt ensemble (CLIP's 7-template subset that CoOp/CoCoOp use for "ensemble" baselines and initialisation).

Each template has one ``{}`` that receives the class name (the trainer replaces ``_`` in class names by spaces).
"""
from __future__ import annotations

from typing import List, Optional

DEFAULT_TEMPLATE = "a photo of a {}."

DATASET_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

ENSEMBLE_TEMPLATES: List[str] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def check_template(template: str) -> str:
    """Return ``template`` if it has exactly one ``{}`` placeholder and no other format field, else raise."""
    if template.count("{}") != 1 or template.replace("{}", "").count("{") or template.replace("{}", "").count("}"):
        raise ValueError(f"a prompt template needs exactly one '{{}}' for the class name, got {template!r}")
    return template


def template_for(dataset_name: str, override: Optional[str] = None) -> str:
    """The hand-crafted prompt of a dataset (registry name); ``override`` wins when non-empty.

    Unknown and custom datasets get ``"a photo of a {}."``.
    """
    if override:
        return check_template(override)
    return DATASET_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def template_from_cfg(cfg) -> str:
    """``DATASET.PROMPT_TEMPLATE`` when set in the config, else the dataset's built-in template."""
    return template_for(cfg.DATASET.NAME, cfg.DATASET.get("PROMPT_TEMPLATE", ""))


def zeroshot_templates(cfg, template: str = "", ensemble: bool = False) -> List[str]:
    """The hand-crafted prompt template(s) of a method: the ensemble, else ``template``, else the dataset's
    (:func:`template_from_cfg`)."""
    if ensemble:
        return list(ENSEMBLE_TEMPLATES)
    return [template or template_from_cfg(cfg)]
