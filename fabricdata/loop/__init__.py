"""Workflows that compose several stages of the loop and the model side: the out-of-fold label audit (folds from
``prepare``, exports, fine-tunes and predictions through ``finetune``'s sweep machinery, scores and views from
``review``)."""
