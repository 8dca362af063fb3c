"""How the transformer audio encoders run: which hidden states, and under what context.

Shared by WavLM and Whisper: the layer choice (last layer, one layer, or the mean of
several) and the inference context (inference_mode, plus autocast on CUDA, where the
encoders are memory-bound and half precision halves the activations).
"""

from __future__ import annotations

import contextlib


def parse_layers(layers, n_layers: int) -> tuple[int, ...] | None:
    """None -> last layer; int, "3,4" or a sequence -> hidden-state indices (0 = embeddings).

    Negative indices count from the end (-1 = last layer).
    """
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [int(x) for x in layers.replace(",", " ").split()]
    elif isinstance(layers, int):
        layers = [layers]
    out = []
    for i in layers:
        j = int(i) + (n_layers + 1 if int(i) < 0 else 0)
        if not 0 <= j <= n_layers:
            raise ValueError(f"layer {i} out of range: the model has hidden states 0..{n_layers}")
        out.append(j)
    if not out:
        raise ValueError("layers must name at least one layer")
    return tuple(out)


def select_hidden(outputs, layers: tuple[int, ...] | None):
    """last_hidden_state, one hidden state, or the mean of several; (B, N, D)."""
    if layers is None:
        return outputs.last_hidden_state  # (B, N, D)
    hs = outputs.hidden_states
    if len(layers) == 1:
        return hs[layers[0]]  # (B, N, D)
    return sum(hs[i].float() for i in layers) / len(layers)  # (B, N, D)


def inference_context(device: str):
    """inference_mode, plus autocast (bf16 where supported, else fp16) on CUDA."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if str(device).startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        stack.enter_context(torch.autocast("cuda", dtype=dtype))
    return stack
