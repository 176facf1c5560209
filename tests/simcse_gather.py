"""Run by tests/objectives/test_simcse.py under `torchrun --nproc_per_node 2`: two processes each take half of one
batch of supervised pairs and train the contrastive objective with negatives gathered from both; the first process
then computes the loss and gradients of the whole batch in one process and writes both to the JSON file named on
the command line."""

import json
import sys

import torch
import torch.distributed as dist
from transformers import BertConfig, BertModel

from hfssl.objectives.simcse import SimCSE


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    objective = SimCSE(BertModel(config, add_pooling_layer=False), "mean", 0.05)
    g = torch.Generator().manual_seed(1)
    batch = {}
    for prefix in ("", "positive_", "negative_"):
        batch[f"{prefix}input_ids"] = torch.randint(3, 60, (8, 10), generator=g)
        mask = torch.ones(8, 10, dtype=torch.long)
        mask[::3, 7:] = 0  # some padding, as a collator leaves it
        batch[f"{prefix}attention_mask"] = mask
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)

    objective.train()
    loss = objective(**{k: v[rows] for k, v in batch.items()}).loss
    loss.backward()
    # What DDP does: average each process's loss and gradients.
    dist.all_reduce(loss.detach(), op=dist.ReduceOp.SUM)
    grads = [p.grad.clone() for p in objective.parameters()]
    for grad in grads:
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
    if rank == 0:
        objective.zero_grad()
        objective.eval()  # no gathering: the whole batch in this process (dropout is off either way)
        whole = objective(**batch).loss
        whole.backward()
        pairs = zip(grads, objective.parameters(), strict=True)
        differences = [(g / world - p.grad).abs().max().item() for g, p in pairs]
        result = {"processes": world, "two_processes": loss.item() / world, "one_process": whole.item()}
        result["largest_gradient_difference"] = max(differences)
        result["largest_gradient"] = max(p.grad.abs().max().item() for p in objective.parameters())
        with open(out, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
