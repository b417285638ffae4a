"""Training: batches, losses, the loop, the teacher; needs the train extra (torch)."""
