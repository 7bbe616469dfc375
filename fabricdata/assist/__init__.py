"""The model in the annotators' hands: drafts for new photos (prelabel) and the gradio page (serve)."""
