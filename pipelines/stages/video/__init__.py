"""Video segmentation, one job a module: probe, plan, cut by stream copy or by re-encoding.

The stage entry point is :func:`pipelines.stages.segment_video.segment_video`.
"""
