"""Helpers for tests of admin change forms."""


def change_form_data(response) -> dict:
    """
    What a browser would post back from an admin change page (`response` of its GET): the main
    form's current values, and each inline's management form as rendered (no inline rows).
    """
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if name in ("password",) or value is None:
            continue
        if name == "date_joined" or name == "last_login":
            data[f"{name}_0"], data[f"{name}_1"] = value.strftime("%Y-%m-%d"), value.strftime("%H:%M:%S")
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list):
            data[name] = [getattr(v, "pk", v) for v in value]
        else:
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{key}": value for key, value in management.initial.items()})
    return data
