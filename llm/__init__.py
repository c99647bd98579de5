"""rectify.llm: LLM survey simulators (the "prompting" family) and trained simulators.

Items and personas, prompts (zero-shot, few-shot, option-order checks), answer distributions read from
token log-probabilities, a crash-safe SQLite response cache, an OpenAI-compatible backend and a local
transformers backend (the embedded SmolLM2-135M-Instruct by default), the sklearn-style
``PromptSimulator``, LoRA fine-tuning (``LoRAClassifier``) and a covariates-only baseline. Heavy
dependencies (torch, transformers, peft, openai) load only when a backend or model is used.
"""

import importlib

_EXPORTS = {
    "items": ["Item", "Scale"],
    "persona": ["Prompt", "render_persona", "render_personas", "build_prompt", "select_examples", "option_order"],
    "distribution": ["answer_table", "probs_from_logprobs", "probs_from_samples", "renormalize", "expected_score",
                     "mode_index"],
    "cache": ["ResponseCache", "RunRecord", "Recovery", "request_key"],
    "base": ["Scores"],
    "local": ["LocalBackend", "embedded_model_file", "embedded_model_dir"],
    "openai_backend": ["OpenAIBackend"],
    "simulator": ["PromptSimulator", "simulate_items", "option_order_check"],
    "baseline": ["CovariateClassifier", "fit_cumulative_logit", "cumulative_logit_proba", "check_labels"],
    "finetune": ["LoRAClassifier", "load_backbone", "auto_target_modules"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
