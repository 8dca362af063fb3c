"""Kept so that older imports of `UserError` from here still work; see data_manifest.user_error."""

from data_manifest.user_error import UserError

__all__ = ["UserError"]
