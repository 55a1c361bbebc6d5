"""The inference engine deployable. In the cloud it is vLLM (`engine/Dockerfile`); this package is its
local stand-in: a small OpenAI-compatible server on transformers + peft, speaking the
protocol subset vLLM serves (chat completions with image data URLs, streaming, `prompt_logprobs`,
`/v1/models`, `/v1/load_lora_adapter`, `/v1/unload_lora_adapter`), on the CPU with the tiny models.

    python -m engine            # 127.0.0.1:8084, RUNTUNE_ENGINE_* settings
"""
