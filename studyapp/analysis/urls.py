urlpatterns: list = []  # filled in by the analysis site (issue 5)
