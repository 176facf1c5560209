"""What a pretrained encoder is worth downstream: fine-tuning, probes, suites of tasks, label-efficiency sweeps,
sentence embeddings and the classic baselines, with the loaders and the report writer they share."""
