"""The command line's work beyond ``serve``: ``check``, ``demo``, ``dev-phone``. May import
any layer, and ``testing`` (the demo runs the simulator)."""
