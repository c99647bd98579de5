"""rectify.llm: LLM survey simulators."""
