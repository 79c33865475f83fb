"""A resumed run is compared with its checkpoint field by field, old value names included."""
from lopt.files.run_folder import differing_fields


def test_a_renamed_value_is_the_same_setting_and_others_still_differ():
    # lopt 0.1 wrote objective "eval" for what is now "valid".
    assert differing_fields({"objective": "eval", "seed": 0},
                            {"objective": "valid", "seed": 0}) == []
    assert differing_fields({"objective": "eval"}, {"objective": "train"}) == \
        ["objective 'eval' (now 'train')"]
    assert differing_fields({"baselines": ["adam"]}, {"baselines": ("adam",)}) == []
    assert differing_fields({"seed": 0}, {}) == ["seed 0 (now '<unset>')"]
