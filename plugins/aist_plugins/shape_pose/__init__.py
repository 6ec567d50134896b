"""First-party shape_pose plugins. REGISTRY lists (kind, name, "module:Class"); keep imports light."""

REGISTRY: list[tuple[str, str, str]] = [
    # Differentiable point clouds (seed report chapter 5): shape + pose from single images.
    ("shape_pose_model", "dpc", "aist_plugins.shape_pose.dpc:DPC"),
    # Supervised viewpoint (azimuth bins + residual, elevation) and point-set (PSGN) model:
    # learns on two CPU cores; its poses are in the ground-truth frame.
    ("shape_pose_model", "viewpoint-psgn", "aist_plugins.shape_pose.supervised:ViewpointPSGN"),
]
