from django.contrib import admin

from .forms import ThrottledAdminAuthenticationForm

# The admin's log-in page counts failures with the site's log-in page: same limits, same keys.
admin.site.login_form = ThrottledAdminAuthenticationForm
