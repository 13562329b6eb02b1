"""/users: admins manage users; auditors read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gpufleet.api.db import User
from gpufleet.api.deps import Ctx, CurrentUser, audit_as
from gpufleet.api.schemas import Page, UserCreate, UserPublic, UserUpdate
from gpufleet.exporter.errors import Conflict, NotFound

router = APIRouter(prefix="/users", tags=["users"])
UserId = Annotated[int, Path(ge=1, le=2**31 - 1, description="user id")]


@router.get("", response_model=Page[UserPublic])
def list_users(ctx: Ctx, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=2**31 - 1)) -> Page[UserPublic]:
    """List users, paginated."""
    with ctx.db.session() as s:
        total = s.execute(select(func.count()).select_from(User)).scalar_one()
        rows = s.execute(select(User).order_by(User.id).offset(offset).limit(limit)).scalars().all()
        return Page[UserPublic](items=[UserPublic.model_validate(u) for u in rows], total=total, limit=limit,
                                offset=offset)


@router.post("", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, request: Request, ctx: Ctx, me: CurrentUser) -> UserPublic:
    """Create a user with a role (admin, developer, auditor)."""
    audit_as(request, "user.create", body.username, role=body.role)
    try:
        with ctx.db.session() as s:
            user = User(username=body.username, password_hash=ctx.auth.hash_password(body.password), role=body.role,
                        team=body.team)
            s.add(user)
            s.flush()
            return UserPublic.model_validate(user)
    except IntegrityError:
        raise Conflict(f"user {body.username!r} exists already") from None


@router.get("/{user_id}", response_model=UserPublic)
def get_user(user_id: UserId, ctx: Ctx) -> UserPublic:
    """One user."""
    with ctx.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        return UserPublic.model_validate(user)


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(user_id: UserId, body: UserUpdate, request: Request, ctx: Ctx, me: CurrentUser) -> UserPublic:
    """Change a user's role, team, password or disabled flag (password or disable revokes their tokens)."""
    audit_as(request, "user.update", str(user_id), fields=sorted(body.model_fields_set))
    revoke = False
    with ctx.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        if body.role is not None:
            if user.id == me.user_id and body.role != "admin":
                raise Conflict("you cannot remove your own admin role")
            user.role = body.role
            revoke = True
        if "team" in body.model_fields_set:
            user.team = body.team
        if body.disabled is not None:
            if user.id == me.user_id and body.disabled:
                raise Conflict("you cannot disable yourself")
            user.disabled = body.disabled
            revoke = revoke or body.disabled
        if body.password is not None:
            user.password_hash = ctx.auth.hash_password(body.password)
            revoke = True
        result = UserPublic.model_validate(user)
    if revoke:
        ctx.auth.revoke_all(user_id)
    return result


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: UserId, request: Request, ctx: Ctx, me: CurrentUser) -> None:
    """Delete a user (their tokens stop working)."""
    audit_as(request, "user.delete", str(user_id))
    if user_id == me.user_id:
        raise Conflict("you cannot delete yourself")
    with ctx.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        s.delete(user)
    ctx.auth.revoke_all(user_id)
