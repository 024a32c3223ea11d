"""Face tracks across video frames: IoU matching, moving average, new and dropped tracks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fer_core.detect import Box
from fer_core.labels import EMOTIONS, NUM_CLASSES
from fer_core.tracking import FaceTracker, match_boxes


def one_hot(emotion: str) -> npt.NDArray[np.float32]:
    scores = np.zeros(NUM_CLASSES, np.float32)
    scores[EMOTIONS.index(emotion)] = 1.0
    return scores


LEFT = Box(50, 100, 120, 120)
RIGHT = Box(400, 100, 120, 120)


def shifted(box: Box, dx: int) -> Box:
    return Box(box.x + dx, box.y, box.width, box.height)


# --- matching


def test_match_boxes_pairs_each_box_with_its_best_overlap() -> None:
    pairs = match_boxes([LEFT, RIGHT], [shifted(RIGHT, 10), shifted(LEFT, -8)])
    assert sorted(pairs) == [(0, 1), (1, 0)]


def test_match_boxes_ignores_far_boxes() -> None:
    assert match_boxes([LEFT], [shifted(LEFT, 100)], iou_threshold=0.3) == []


def test_match_boxes_pairs_a_fast_moving_face_by_its_centre() -> None:
    # 55 pixels on a 120-pixel box: IoU 0.37 < 0.5, but the centre moved under half a width.
    assert match_boxes([LEFT], [shifted(LEFT, 55)], iou_threshold=0.5) == [(0, 0)]


def test_match_boxes_does_not_pair_a_much_larger_box_by_its_centre() -> None:
    assert match_boxes([LEFT], [Box(20, 70, 200, 200)], iou_threshold=0.9) == []


def test_match_boxes_uses_each_box_once() -> None:
    # Two previous boxes both overlap one new box: only the better one continues.
    pairs = match_boxes([LEFT, shifted(LEFT, 30)], [shifted(LEFT, 5)])
    assert pairs == [(0, 0)]


# --- tracker


def test_first_faces_start_new_tracks_with_their_own_ids() -> None:
    tracker = FaceTracker()
    faces = tracker.update([LEFT, RIGHT], [one_hot("happy"), one_hot("sad")])
    assert [face.track_id for face in faces] == [1, 2]
    assert [face.emotion for face in faces] == ["happy", "sad"]
    assert all(face.missed == 0 for face in faces)


def test_a_moving_face_keeps_its_track_id() -> None:
    tracker = FaceTracker()
    tracker.update([LEFT], [one_hot("happy")])
    for step in range(1, 6):
        faces = tracker.update([shifted(LEFT, 12 * step)], [one_hot("happy")])
    assert [face.track_id for face in faces] == [1]
    assert faces[0].box == shifted(LEFT, 60)


def test_two_faces_swapping_list_order_keep_their_ids() -> None:
    tracker = FaceTracker(smoothing=0.0)
    tracker.update([LEFT, RIGHT], [one_hot("happy"), one_hot("sad")])
    faces = tracker.update([shifted(RIGHT, 4), shifted(LEFT, 4)], [one_hot("sad"), one_hot("happy")])
    by_id = {face.track_id: face for face in faces}
    assert by_id[1].emotion == "happy" and by_id[1].box == shifted(LEFT, 4)
    assert by_id[2].emotion == "sad" and by_id[2].box == shifted(RIGHT, 4)


def test_moving_average_follows_the_smoothing_weight() -> None:
    tracker = FaceTracker(smoothing=0.75)
    tracker.update([LEFT], [one_hot("happy")])
    faces = tracker.update([LEFT], [one_hot("sad")])
    scores = faces[0].scores
    assert scores[EMOTIONS.index("happy")] == pytest.approx(0.75)
    assert scores[EMOTIONS.index("sad")] == pytest.approx(0.25)
    assert scores.sum() == pytest.approx(1.0)


def test_smoothing_keeps_a_one_frame_glitch_from_flipping_the_label() -> None:
    tracker = FaceTracker(smoothing=0.7)
    for _ in range(5):
        tracker.update([LEFT], [one_hot("happy")])
    faces = tracker.update([LEFT], [one_hot("angry")])
    assert faces[0].emotion == "happy"


def test_zero_smoothing_shows_the_raw_scores() -> None:
    tracker = FaceTracker(smoothing=0.0)
    tracker.update([LEFT], [one_hot("happy")])
    faces = tracker.update([LEFT], [one_hot("fear")])
    np.testing.assert_allclose(faces[0].scores, one_hot("fear"))


def test_smoothing_can_change_between_frames() -> None:
    tracker = FaceTracker(smoothing=0.9)
    tracker.update([LEFT], [one_hot("happy")])
    tracker.smoothing = 0.0
    faces = tracker.update([LEFT], [one_hot("sad")])
    assert faces[0].emotion == "sad"


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 2.0])
def test_smoothing_outside_zero_to_one_is_refused(smoothing: float) -> None:
    with pytest.raises(ValueError, match="smoothing must be in"):
        FaceTracker(smoothing=smoothing)


def test_an_unseen_face_keeps_its_box_until_it_is_dropped() -> None:
    tracker = FaceTracker(max_missed=2)
    tracker.update([LEFT], [one_hot("happy")])
    faces = tracker.update([], [])
    assert [(face.track_id, face.box, face.missed) for face in faces] == [(1, LEFT, 1)]
    assert tracker.update([], [])[0].missed == 2
    assert tracker.update([], []) == []


def test_a_face_seen_again_before_the_limit_keeps_its_id() -> None:
    tracker = FaceTracker(max_missed=3)
    tracker.update([LEFT], [one_hot("happy")])
    tracker.update([], [])
    faces = tracker.update([shifted(LEFT, 5)], [one_hot("happy")])
    assert [(face.track_id, face.missed) for face in faces] == [(1, 0)]


def test_a_new_face_far_away_gets_a_new_id() -> None:
    tracker = FaceTracker()
    tracker.update([LEFT], [one_hot("happy")])
    faces = tracker.update([LEFT, RIGHT], [one_hot("happy"), one_hot("surprise")])
    assert [face.track_id for face in faces] == [1, 2]


def test_ids_are_not_reused_after_a_track_is_dropped() -> None:
    tracker = FaceTracker(max_missed=0)
    tracker.update([LEFT], [one_hot("happy")])
    tracker.update([], [])
    faces = tracker.update([LEFT], [one_hot("happy")])
    assert [face.track_id for face in faces] == [2]


def test_reset_forgets_tracks() -> None:
    tracker = FaceTracker()
    tracker.update([LEFT], [one_hot("happy")])
    tracker.reset()
    assert tracker.faces() == []


def test_mismatched_boxes_and_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="2 boxes but 1 rows"):
        FaceTracker().update([LEFT, RIGHT], [one_hot("happy")])


def test_scores_are_renormalized() -> None:
    faces = FaceTracker().update([LEFT], [np.full(NUM_CLASSES, 2.0, np.float32)])
    assert faces[0].scores.sum() == pytest.approx(1.0)
