"""The model side: Florence-2 LoRA/DoRA fine-tuning and prediction (never imports fiftyone)."""
