"""/auth: login, refresh, logout, password change, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpufleet.api.db import User
from gpufleet.api.deps import Ctx, CurrentUser, audit_as
from gpufleet.api.schemas import (
    LoginRequest,
    LogoutRequest,
    PasswordChange,
    RefreshRequest,
    TokenPublic,
    UserPublic,
)
from gpufleet.api.security import AuthError

router = APIRouter(prefix="/auth", tags=["auth"])


def _token(pair) -> TokenPublic:  # type: ignore[no-untyped-def]
    return TokenPublic(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/login", response_model=TokenPublic)
def login(body: LoginRequest, request: Request, ctx: Ctx) -> TokenPublic:
    """Exchange a username and password for an access token (short-lived) and a refresh token."""
    request.state.audit_user = body.username
    audit_as(request, "login", body.username)
    source = request.client.host if request.client else "?"
    user, pair = ctx.auth.login(body.username, body.password, source)
    request.state.audit_role = user.role
    return _token(pair)


@router.post("/refresh", response_model=TokenPublic)
def refresh(body: RefreshRequest, request: Request, ctx: Ctx) -> TokenPublic:
    """Exchange a refresh token (used once) for a new token pair."""
    audit_as(request, "refresh", "token")
    user, pair = ctx.auth.refresh(body.refresh_token)
    request.state.audit_user = user.username
    request.state.audit_role = user.role
    return _token(pair)


@router.post("/logout", status_code=204)
def logout(body: LogoutRequest, request: Request, ctx: Ctx, me: CurrentUser) -> None:
    """End the session this access token belongs to: its refresh token and every access token issued
    from that login stop working (send ``refresh_token`` to end that token's session too)."""
    audit_as(request, "logout", me.username)
    ctx.auth.revoke(me, body.refresh_token)


@router.post("/password", status_code=204)
def change_password(body: PasswordChange, request: Request, ctx: Ctx, me: CurrentUser) -> None:
    """Change your password; every token you hold stops working."""
    audit_as(request, "password.change", me.username)
    with ctx.db.session() as s:
        user = s.get(User, me.user_id)
        if user is None or not ctx.auth.verify_password(user.password_hash, body.current_password):
            raise AuthError("current password is wrong")
        user.password_hash = ctx.auth.hash_password(body.new_password)
    ctx.auth.revoke_all(me.user_id)


@router.get("/me", response_model=UserPublic)
def whoami(ctx: Ctx, me: CurrentUser) -> UserPublic:
    """The user the token belongs to."""
    with ctx.db.session() as s:
        user = s.get(User, me.user_id)
        return UserPublic.model_validate(user)
