import cProfile, pstats, random, pytest
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study
pytestmark = pytest.mark.django_db
def test_prof():
    study = learning_study()
    pr = cProfile.Profile(); pr.enable()
    for i in range(3):
        b = Bot(study.slug, rng=random.Random(i)); b.open_link(); b.walk()
    pr.disable()
    pstats.Stats(pr).sort_stats("cumulative").print_stats(35)
