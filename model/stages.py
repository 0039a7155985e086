"""Names of the request's stages, shared by the pipeline, the suites (metric names), the profiler (range
names) and the report (stacked bars). Plain constants: importing them loads no torch."""

PREPROCESS, VISION, PROJECTOR, LLM_PREFILL, DECODE_STEP = (
    "preprocess",
    "vision",
    "projector",
    "llm_prefill",
    "decode_step",
)
MEDIA_STAGES = (PREPROCESS, VISION, PROJECTOR)
PREFILL_STAGES = (*MEDIA_STAGES, LLM_PREFILL)  # their sum is the time to first token (TTFT)
GRAPH_CAPTURE = "graph_capture"  # one-time, inside an engine's setup: the CUDA graph captures alone
# Training: the loss forward (media stages + LLM), then these.
LLM_FORWARD, BACKWARD, OPTIMIZER = "llm_forward", "backward", "optimizer"
TRAIN_STAGES = (VISION, PROJECTOR, LLM_FORWARD, BACKWARD, OPTIMIZER)
