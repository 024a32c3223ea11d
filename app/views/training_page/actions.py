"""A run's actions: promote its model (asking first when it may be worse than the shipped one) and delete it."""

from __future__ import annotations

import streamlit as st

from app.access import admin_button, is_admin, require_admin
from app.views.training_page.common import confirm_key, promoted_run_name
from training import launcher, promote
from training.runs import RunSnapshot


def promote_button(snapshot: RunSnapshot) -> None:
    in_use = promoted_run_name() == snapshot.name
    has_model = snapshot.run.model_path() is not None
    if snapshot.status.diverged:
        why_not = "This run diverged (its loss became NaN or infinite): its model is not usable."
    elif not has_model:
        why_not = "This run has no model yet: it appears after the first epoch."
    else:
        why_not = ""
    clicked = admin_button(
        "In use" if in_use else "Use this model",
        type="primary",
        icon=":material/check:" if in_use else ":material/rocket_launch:",
        key=f"promote-{snapshot.name}",
        disabled=bool(why_not),
        width="stretch",
        help=why_not
        or (
            "Live, Photos and Video use this run's model now. Click to copy it there again (after the run "
            "was resumed, say); **Go back to the shipped model** undoes it."
            if in_use
            else "Copy this run's model to where the Live, Photos and Video pages load it from."
        ),
    )
    if not clicked:
        return
    if promote.promotion_concerns(snapshot.run):
        st.session_state[confirm_key("promote", snapshot)] = True  # asked below, with the reasons
        return
    promote_ui(snapshot)


def promote_confirmation_ui(snapshot: RunSnapshot) -> None:
    """Ask before promoting a model that may make the Live, Photos and Video pages worse, and say why."""
    key = confirm_key("promote", snapshot)
    if not st.session_state.get(key) or not is_admin():
        return
    concerns = promote.promotion_concerns(snapshot.run)
    st.warning(
        "Use this model anyway? " + " ".join(concern[:1].upper() + concern[1:] + "." for concern in concerns),
        icon=":material/warning:",
    )
    yes, no = st.columns(2)
    if yes.button("Use it anyway", key=f"promote-anyway-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        promote_ui(snapshot)
    if no.button("Keep the current model", key=f"promote-cancel-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        st.rerun()


def promote_ui(snapshot: RunSnapshot) -> None:
    """Promote the run's model (admins only) and say so, or show why it could not be."""
    require_admin("change the model the pages use")
    try:
        destination = promote.promote_run(snapshot.run)
    except (ValueError, OSError) as error:
        st.error(f"Could not promote: {error}")
        return
    st.toast(
        f"Live, Photos and Video now use {snapshot.name}'s model ({destination.name}).", icon=":material/rocket_launch:"
    )
    st.rerun()


def delete_ui(snapshot: RunSnapshot) -> None:
    """Delete the run folder, after a confirmation; never the training run or the promoted model's."""
    if not is_admin():
        return
    if snapshot.is_active:
        why_not = "A run that trains cannot be deleted: stop it first."
    elif promoted_run_name() == snapshot.name:
        why_not = "The Live, Photos and Video pages use this run's model: go back to the shipped model first."
    else:
        why_not = ""
    key = confirm_key("delete", snapshot)
    if not st.session_state.get(key):
        if st.button(
            "Delete run",
            icon=":material/delete:",
            key=f"delete-{snapshot.name}",
            disabled=bool(why_not),
            help=why_not or "Delete this run's folder: its settings, curves and models.",
        ):
            st.session_state[key] = True
            st.rerun()
        return
    st.warning(f"Delete run **{snapshot.name}** and everything in its folder? This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button("Delete for good", type="primary", key=f"delete-yes-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        require_admin("delete runs")
        try:
            launcher.delete_run(snapshot.run)
        except launcher.PartialDeleteError as error:  # gone from the runs; some files were left behind
            st.toast(str(error), icon=":material/warning:", duration="long")
            st.rerun()
        except (ValueError, OSError) as error:
            st.error(f"Could not delete: {error}")
            return
        st.toast(f"Deleted run {snapshot.name}.", icon=":material/delete:")
        st.rerun()
    if no.button("Keep it", key=f"delete-no-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        st.rerun()
