"""The OpenAI-compatible front door: the Files and Batch APIs and chat completions, served
by Thrifty's own pipeline (each request becomes a job through ``app/intake``)."""
