"""Text embeddings for the semantic cache: a local MiniLM default and an OpenAI-compatible API."""
