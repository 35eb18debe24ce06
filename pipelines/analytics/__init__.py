"""Analyses over a whole collection: classification by a vote of labelled neighbours
(:mod:`.classify`), near-duplicate groups (:mod:`.duplicates`) and topic clusters
(:mod:`.cluster`). Each scans the collection in blocks (:mod:`.blocks`) and does its vector work
in Ray tasks, one block (or pair of blocks) per task; the driver holds only small results."""
