"""rectify.estimators: corrections of LLM predictions against a human pilot."""
