"""The built-in plugins of feph_finetune, installed as ``feph_finetune_plugins``.

Each module is one capability and uses only the public API (``feph_finetune``'s exports), as a
third-party plugin would. The core registers them from its list of defaults.
"""
